//! `director reaper`: what a maintenance pass would terminate (`--dry-run`), or the operator's
//! word after restoring the database from a backup (`--confirm-restore`).

use std::process::ExitCode;

use conpaas_core::config::LoadedConfig;
use conpaas_core::director::{self, setup};

use super::vouch::vouch;

/// `director reaper --dry-run | --confirm-restore`.
pub(super) fn reaper(loaded: &LoadedConfig, dry_run: bool) -> anyhow::Result<ExitCode> {
    if !setup::ca_exists(loaded) {
        eprintln!(
            "E: no CA in {}: there is no installation, hence no VM of it",
            loaded.config.ca.cert_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(refused) = vouch(loaded, false)? {
        return Ok(refused);
    }
    let director = director::DirectorBuilder::from_config(loaded)?
        .key_pool(0)
        .build()?;
    let mode = loaded.config.reaper;
    let grace = loaded.config.reap_grace;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if dry_run {
            let report = director.reap_dry_run(grace).await?;
            print_dry_run(&report, mode, grace);
            return anyhow::Ok(ExitCode::SUCCESS);
        }
        let confirmed = match director.confirm_restore().await {
            Ok(confirmed) => confirmed,
            Err(error @ director::Error::CloudsUnlisted(_)) => {
                eprintln!("E: {error}");
                return Ok(ExitCode::FAILURE);
            }
            Err(error) => return Err(error.into()),
        };
        director.flush_audit().await?;
        match &confirmed.hold {
            Some(hold) => println!(
                "the reaper's hold is over (held since {} UTC: a VM of service {} was listed, \
                 the database had given service ids up to {})",
                hold.since.format("%Y-%m-%d %H:%M:%S"),
                hold.listed_sid,
                hold.allocated_sid
            ),
            None => println!("the reaper was not held"),
        }
        println!(
            "{} VM(s) of this installation listed; service ids given: up to {} before, up to {} \
             now (new services get higher ones)",
            confirmed.listed, confirmed.allocated_before, confirmed.allocated_after
        );
        match mode {
            director::ReaperMode::On => println!(
                "the next maintenance pass of `director serve` terminates the VMs without a \
                 service row older than REAP_GRACE ({} s): see `director reaper --dry-run`",
                grace.as_secs()
            ),
            other => println!(
                "REAPER = {other}: VMs without a service row are not terminated (see `director \
                 reaper --dry-run`)"
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The dry run's table: one line per VM without a service row, and what a pass would do.
fn print_dry_run(
    report: &director::ReapReport,
    mode: director::ReaperMode,
    grace: std::time::Duration,
) {
    let held = report.hold.is_some() || report.database_behind;
    println!(
        "REAPER = {mode}, REAP_GRACE = {} s: {} VM(s) of this installation listed, {} without a \
         service row; service ids given up to {}",
        grace.as_secs(),
        report.listed,
        report.withheld.len(),
        report
            .highest_allocated_sid
            .map_or_else(|| "0".to_owned(), |sid| sid.to_string())
    );
    if let Some(hold) = &report.hold {
        println!(
            "the reaper is held since {} UTC: a VM of service {} was listed, the database had \
             given service ids up to {} (a restored backup?); it terminates nothing until \
             `director reaper --confirm-restore`",
            hold.since.format("%Y-%m-%d %H:%M:%S"),
            hold.listed_sid,
            hold.allocated_sid
        );
    } else if let (true, Some(listed)) = (report.database_behind, report.highest_listed_sid) {
        println!(
            "the database is older than the clouds: a VM of service {listed} is listed, which \
             this database never gave (a restored backup?); the next pass holds the reaper: it \
             terminates nothing until `director reaper --confirm-restore`"
        );
    }
    for (cloud, failure) in &report.failures {
        println!("cannot list {cloud}: {failure}");
    }
    if report.withheld.is_empty() {
        println!("nothing to terminate");
        return;
    }
    println!("CLOUD\tVMID\tSID\tAGE\tWHY\tA PASS WOULD");
    for vm in &report.withheld {
        let verdict = if mode == director::ReaperMode::Off {
            "leave it (REAPER = off)"
        } else if held {
            "leave it (held)"
        } else if !vm.due {
            "leave it (within REAP_GRACE)"
        } else if mode == director::ReaperMode::Report {
            "report it (REAPER = report)"
        } else {
            "terminate it"
        };
        println!(
            "{}\t{}\t{}\t{}s\t{}\t{verdict}",
            vm.cloud,
            vm.vmid,
            vm.sid,
            vm.age.as_secs(),
            vm.reason
        );
    }
}
