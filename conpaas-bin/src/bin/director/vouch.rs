//! The database's vouching for the clouds, before `serve` and `reaper` act on them.

use std::process::ExitCode;

use conpaas_core::config::LoadedConfig;
use conpaas_core::director::{self, setup};

/// Refuses a database that cannot vouch for the clouds ([`setup::vouch_for_database`]): one
/// empty beside an existing CA (unless `new_database`), or another installation's.
pub(super) fn vouch(loaded: &LoadedConfig, new_database: bool) -> anyhow::Result<Option<ExitCode>> {
    match setup::vouch_for_database(loaded, new_database) {
        Ok(setup::Vouched::Adopted) => {
            tracing::info!(
                "{} has no installation record (an earlier version's): recorded this CA's",
                setup::database_name(loaded)
            );
            Ok(None)
        }
        Ok(setup::Vouched::New) => {
            tracing::warn!(
                "{} declared new (--new-database): recorded this CA's installation; VMs already \
                 running under this CA are left alone until `director reaper --confirm-restore`",
                setup::database_name(loaded)
            );
            Ok(None)
        }
        Ok(_) => Ok(None),
        Err(
            error @ (director::Error::EmptyDatabase { .. }
            | director::Error::ForeignDatabase { .. }),
        ) => {
            eprintln!("E: {error}");
            Ok(Some(ExitCode::FAILURE))
        }
        Err(error) => Err(error.into()),
    }
}
