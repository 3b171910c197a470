//! The `process_*` metrics every Prometheus client exports (client_golang's names and
//! meanings), read from `/proc/self` at each scrape. Linux only: elsewhere there are none.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Encodes the process metrics of this process.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// What `/proc/self` says of this process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    /// `None` where `/proc/stat` is hidden (systemd's `ProcSubset=pid`).
    start_time_seconds: Option<f64>,
    virtual_memory_bytes: f64,
    resident_memory_bytes: f64,
    threads: f64,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(metric)?;
        for (name, help, value) in [
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                stats.start_time_seconds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(stats.virtual_memory_bytes),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(stats.resident_memory_bytes),
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                Some(stats.threads),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                stats.max_fds,
            ),
        ] {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())
    });
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as f64);
    parse(
        &stat,
        boot_time,
        limits.as_deref(),
        open_fds,
        rustix::param::clock_ticks_per_second() as f64,
        rustix::param::page_size() as f64,
    )
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<ProcessStats> {
    None
}

/// `/proc/self/stat` (proc(5)): the fields after the command name, which is in parentheses and
/// may hold spaces and parentheses itself, so the text is split at its last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse(
    stat: &str,
    boot_time: Option<f64>,
    limits: Option<&str>,
    open_fds: Option<f64>,
    ticks: f64,
    page_size: f64,
) -> Option<ProcessStats> {
    let (_, after) = stat.rsplit_once(')')?;
    // `after` starts at field 3 (state): field N is index N - 3.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    // The open files limit's soft value; "unlimited" has no number.
    let max_fds = limits.and_then(|limits| {
        limits
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    Some(ProcessStats {
        cpu_seconds: (utime + stime) / ticks,
        start_time_seconds: boot_time
            .zip(field(22))
            .map(|(boot, start)| boot + start / ticks),
        virtual_memory_bytes: field(23)?,
        resident_memory_bytes: field(24)? * page_size,
        threads: field(20)?,
        open_fds,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_parentheses_and_spaces() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss
        let stat = "4242 (dir (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    1000 104857600 2560 18446744073709551615";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let stats = parse(
            stat,
            Some(1_700_000_000.0),
            Some(limits),
            Some(12.0),
            100.0,
            4096.0,
        )
        .unwrap();
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: 3.0,
                start_time_seconds: Some(1_700_000_010.0),
                virtual_memory_bytes: 104_857_600.0,
                resident_memory_bytes: 10_485_760.0,
                threads: 7.0,
                open_fds: Some(12.0),
                max_fds: Some(1024.0),
            }
        );
        assert_eq!(parse("garbage", None, None, None, 100.0, 4096.0), None);
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        let without = parse(stat, None, Some(unlimited), None, 100.0, 4096.0).unwrap();
        assert_eq!(without.max_fds, None);
        // systemd's ProcSubset=pid hides /proc/stat: everything but the start time.
        assert_eq!(without.start_time_seconds, None);
        assert_eq!(without.cpu_seconds, 3.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads() {
        let stats = read().unwrap();
        assert!(stats.resident_memory_bytes > 0.0, "{stats:?}");
        assert!(stats.threads >= 1.0, "{stats:?}");
        assert!(stats.open_fds.unwrap() >= 3.0, "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = stats.start_time_seconds.unwrap();
        assert!(start <= now + 1.0, "{stats:?}");
        assert!(start > now - 86_400.0 * 30.0, "{stats:?}");
    }
}
