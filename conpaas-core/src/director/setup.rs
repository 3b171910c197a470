//! Installation: `director init` (1.2's `cpsconf.py`) and the first start of the embedded default.

use crate::ca::{CertificateAuthority, IfExists, IssuedCertificate};
use crate::cloud::DriverSettings;
use crate::config::{self, DirectorUrl, LoadedConfig};
use crate::store::{self, DatabaseUrl, NewCertificate, Store};

use super::Error;

/// The port 1.2's Apache site listened on, which `cpsconf.py` wrote into DIRECTOR_URL.
pub const DEFAULT_PORT: u16 = 5555;

/// What `init` did.
#[derive(Debug)]
#[non_exhaustive]
pub struct InitReport {
    /// The new DIRECTOR_URL written into the config file.
    pub director_url: DirectorUrl,
    /// The director's new certificate.
    pub director_cert: IssuedCertificate,
    /// Migrations applied to the database.
    pub migrations: Vec<String>,
    /// Default manager templates written (dummy-only installations).
    pub templates: Vec<std::path::PathBuf>,
}

/// Whether `CERT_DIR` holds a CA.
pub fn ca_exists(config: &LoadedConfig) -> bool {
    let dir = &config.config.ca.cert_dir;
    dir.join(crate::ca::CA_CERT_FILE).exists() || dir.join(crate::ca::CA_KEY_FILE).exists()
}

/// The port `init` writes into `DIRECTOR_URL`: the one already there (1.2 installations run on
/// 443 or 5561 as well as 5555; `https://host` without a port stays so), else 5555 as
/// `cpsconf.py` wrote.
fn director_port(config: &LoadedConfig) -> Option<u16> {
    config
        .config
        .director_url
        .as_ref()
        .map_or(Some(DEFAULT_PORT), DirectorUrl::port)
}

/// `cpsconf.py`: a new CA and director certificate for `hostname` in CERT_DIR, the database
/// created and migrated, `DIRECTOR_URL = https://<hostname>:<port>` written into the file (the
/// port the file had, 5555 when it had none).
///
/// An existing CA is kept unless `force`: replacing it breaks every certificate issued so far.
/// Checks come first, so a refusal writes nothing.
pub fn init(config: &LoadedConfig, hostname: &str, force: bool) -> Result<InitReport, Error> {
    let settings = &config.config;
    if !force && ca_exists(config) {
        return Err(Error::CaExists(settings.ca.cert_dir.clone()));
    }
    // Validate the host name before touching anything.
    let port = director_port(config);
    let director_url = DirectorUrl::new(hostname, port)?;
    // `connect`, not `open`, which migrates already: the report says what this call applied.
    let store = Store::connect(&settings.store)?;
    let migrations = store.migrate()?;
    let if_exists = if force {
        IfExists::Replace
    } else {
        IfExists::Fail
    };
    let ca = CertificateAuthority::create(&settings.ca, if_exists)?;
    let director_cert = ca.write_director_cert(director_url.host(), IfExists::Replace)?;
    record(&store, &director_cert)?;
    // The database and the CA made together know each other from now on.
    let tag = crate::ca::installation_tag(ca.cert_der());
    store.run_blocking(|conn| store::record_installation(conn, &tag))?;
    let director_url = config::set_director_url(&config.path, director_url.host(), port)?;
    let templates = install_templates_if_dummy(config)?;
    super::metrics_token::create(settings)?;
    Ok(InitReport {
        director_url,
        director_cert,
        migrations,
        templates,
    })
}

/// A new director certificate for `hostname` under the existing CA (`director init --keep-ca`):
/// for a host name change, or to replace a 1.2-made director certificate, without breaking the
/// certificates of running managers, agents and users as a new CA would.
pub fn reissue_director_cert(config: &LoadedConfig, hostname: &str) -> Result<InitReport, Error> {
    let settings = &config.config;
    let port = director_port(config);
    let director_url = DirectorUrl::new(hostname, port)?;
    let store = Store::open(&settings.store)?;
    let ca = CertificateAuthority::load(&settings.ca)?;
    let director_cert = ca.write_director_cert(director_url.host(), IfExists::Replace)?;
    record(&store, &director_cert)?;
    let director_url = config::set_director_url(&config.path, director_url.host(), port)?;
    // An installation from before the token gets one with its next certificate.
    super::metrics_token::create(settings)?;
    Ok(InitReport {
        director_url,
        director_cert,
        migrations: Vec::new(),
        templates: Vec::new(),
    })
}

/// How [`vouch_for_database`] found the database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Vouched {
    /// It records this CA's installation.
    Recorded,
    /// It had a history but no record (made by an earlier version, or a 1.2 database): this
    /// CA's installation is recorded now.
    Adopted,
    /// It was empty and declared new (`--new-database`): this CA's installation is recorded.
    /// VMs already running under the CA keep the reaper held until the operator confirms.
    New,
}

/// The database as the operator knows it: its path, never a password.
pub fn database_name(config: &LoadedConfig) -> String {
    match &config.config.store.url {
        DatabaseUrl::Sqlite(path) => format!("the database {}", path.display()),
        DatabaseUrl::Postgres(_) => format!(
            "the PostgreSQL database of DATABASE_URI in {}",
            config.path.display()
        ),
        _ => "the in-memory database".to_owned(),
    }
}

/// Checks, before serving beside an existing CA, that the database belongs to it: one that
/// records another CA's installation is refused ([`Error::ForeignDatabase`]); an empty one
/// (no record, no user, application or service ever) is refused unless `new_database`
/// ([`Error::EmptyDatabase`]), and a missing SQLite file is not even created then. A
/// database with a history but no record adopts this CA's installation. Opens and migrates
/// the database. Blocking.
pub fn vouch_for_database(config: &LoadedConfig, new_database: bool) -> Result<Vouched, Error> {
    let settings = &config.config;
    let empty = || Error::EmptyDatabase {
        database: database_name(config),
        cert_dir: settings.ca.cert_dir.clone(),
    };
    // The CA's own checks (a key others can read) come first, before the database is opened.
    let ca = CertificateAuthority::load(&settings.ca)?;
    let tag = crate::ca::installation_tag(ca.cert_der());
    if let DatabaseUrl::Sqlite(path) = &settings.store.url
        && !new_database
        && !path.exists()
    {
        return Err(empty());
    }
    let store = Store::open(&settings.store)?;
    let (found, history) = store.run_blocking(|conn| -> Result<_, store::Error> {
        Ok((store::find_installation(conn)?, store::has_history(conn)?))
    })?;
    let vouched = match found {
        Some(found) if found.tag == tag => return Ok(Vouched::Recorded),
        Some(found) => {
            return Err(Error::ForeignDatabase {
                database: database_name(config),
                recorded: found.tag,
                tag,
                cert_dir: settings.ca.cert_dir.clone(),
            });
        }
        None if history => Vouched::Adopted,
        None if new_database => Vouched::New,
        None => return Err(empty()),
    };
    store.run_blocking(|conn| store::record_installation(conn, &tag))?;
    Ok(vouched)
}

/// Records an issued certificate's serial (unique: a collision is refused by the database).
pub fn record(store: &Store, issued: &IssuedCertificate) -> Result<(), Error> {
    let new = certificate_record(issued);
    let event = super::audit::certificate_event(&new).to_new();
    store.run_blocking(move |conn| super::audit::record_certificate(conn, &new, &event))?;
    Ok(())
}

/// Installs the minimal manager templates into CONF_DIR when every configured cloud is the
/// dummy one (a real cloud needs the ConPaaS `scripts/` and `config/` trees instead, and
/// cpscheck says so).
pub fn install_templates_if_dummy(config: &LoadedConfig) -> Result<Vec<std::path::PathBuf>, Error> {
    let all_dummy = config
        .config
        .clouds()
        .all(|cloud| matches!(cloud.driver, DriverSettings::Dummy));
    if !all_dummy {
        return Ok(Vec::new());
    }
    crate::bootstrap::install_default_templates(&config.config.conf_dir).map_err(Error::Templates)
}

/// The issued-certificates row of `issued` (the store does not know the CA's types).
pub fn certificate_record(issued: &IssuedCertificate) -> NewCertificate {
    NewCertificate {
        serial: issued.serial.clone(),
        role: issued.role,
        uid: issued.uid,
        sid: issued.sid,
        not_before: issued.not_before.naive_utc(),
        not_after: issued.not_after.naive_utc(),
    }
}
