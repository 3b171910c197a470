//! `/upload_manifest`'s processing (spec/director-api.md §3.15): the application, then each
//! service in order: created as `/start` does, its manager waited for, renamed, fed its code
//! archive and startup script, started, configured (MySQL password and dump, XtreemFS volume)
//! and scaled. The first error message stops the run; services created before stay.
//!
//! Bounded where 1.2 was not (§6 item 15): each wait for a manager state polls with a delay and
//! gives up after a timeout, downloads go through [`super::fetch`], and each user runs at most
//! [`ManifestSettings::max_jobs_per_user`] manifests at once (counted per director process).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::fetch::{self, DownloadPolicy};
use super::{Director, Error, StartRequest};
use crate::config::DirectorConfig;
use crate::manager_client::{self, Upload};
use crate::model::ErrorChain;
use crate::model::{Application, Service, ServiceId, ServiceType, UserId};

/// The types a manifest may name (`helloworld` is accepted by `/start` only, as in 1.2).
pub const MANIFEST_TYPES: [&str; 8] = [
    "php", "java", "mysql", "scalaris", "hadoop", "selenium", "xtreemfs", "taskfarm",
];

/// How often a manager's state is asked for while waiting (1.2 slept 2 s after a failure).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long the director waits for a manager to reach a state (1.2 waited forever).
pub const DEFAULT_STATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The pause before `createVolume`, for the first XtreemFS nodes to come up (1.2's 20 s).
pub const DEFAULT_VOLUME_DELAY: Duration = Duration::from_secs(20);

/// How many manifests one user may have running at once, by default.
pub const DEFAULT_MAX_JOBS_PER_USER: usize = 4;

/// The PHP-FPM template of the agents, to which the environment snippet adds variables (1.2's
/// path inside the agents' ConPaaS tree).
const FPM_TEMPLATE: &str = "/root/ConPaaS/src/conpaas/services/webservers/etc/fpm.tmpl";

/// How manifests are processed: [`ManifestSettings::recommended`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManifestSettings {
    /// The delay between two `get_service_info` polls of a manager not yet in the wanted state
    /// (or not answering).
    pub poll_interval: Duration,
    /// How long one wait for a manager state may last.
    pub state_timeout: Duration,
    /// The pause after the start of an XtreemFS service before its volume is created.
    pub volume_delay: Duration,
    /// How many manifests one user may have running at once in this director process.
    pub max_jobs_per_user: usize,
    /// What may be downloaded.
    pub download: DownloadPolicy,
}

impl ManifestSettings {
    /// The defaults, with `[director] MANIFEST_ALLOW_PRIVATE_URLS` from `config`.
    pub fn from_config(config: &DirectorConfig) -> ManifestSettings {
        ManifestSettings {
            download: DownloadPolicy::recommended(config.manifest_allow_private_urls),
            ..ManifestSettings::recommended()
        }
    }

    /// The defaults: 1.2's waits, [`DEFAULT_MAX_JOBS_PER_USER`], downloads from public
    /// addresses only.
    pub fn recommended() -> ManifestSettings {
        ManifestSettings {
            poll_interval: DEFAULT_POLL_INTERVAL,
            state_timeout: DEFAULT_STATE_TIMEOUT,
            volume_delay: DEFAULT_VOLUME_DELAY,
            max_jobs_per_user: DEFAULT_MAX_JOBS_PER_USER,
            download: DownloadPolicy::recommended(false),
        }
    }

    setters! {
        poll_interval: Duration,
        state_timeout: Duration,
        volume_delay: Duration,
        max_jobs_per_user: usize,
        download: DownloadPolicy,
    }
}

/// A manifest as the api layer read it from the JSON text, or as an embedder builds it for
/// [`Director::prepare_manifest`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Manifest {
    /// `Application`, as text; `None` when absent or empty.
    pub application: Option<String>,
    /// `Services`, in order.
    pub services: Vec<ManifestService>,
}

impl Manifest {
    /// The application `application` (`None`: 1.2's unnamed one) with `services`, in order.
    pub fn new(application: Option<String>, services: Vec<ManifestService>) -> Self {
        Manifest {
            application,
            services,
        }
    }
}

/// One entry of `Services`. Optional members are `None` when absent or falsy, as 1.2 tested
/// them (`if json.get(key)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManifestService {
    /// `Type` (not empty).
    pub service_type: String,
    /// `Cloud`, `default` when absent or empty.
    pub cloud: String,
    /// `ServiceName`.
    pub name: Option<String>,
    /// `Archive`: a URL (php, java).
    pub archive: Option<String>,
    /// `StartupScript`: a URL.
    pub startup_script: Option<String>,
    /// `Start`, truthy.
    pub start: bool,
    /// `StartupInstances`: its truthy members, each value as text (`"5"` for `5` or `"5"`).
    pub startup_instances: Option<Vec<(String, String)>>,
    /// `Password` (mysql), never logged.
    pub password: Option<SecretString>,
    /// `Dump`: a URL (mysql).
    pub dump: Option<String>,
    /// `VolumeStartup` (xtreemfs).
    pub volume_startup: Option<VolumeStartup>,
    /// Members that are present and truthy but not of the shape their key needs.
    pub unreadable: Vec<Unreadable>,
}

impl ManifestService {
    /// A service of `service_type` on the `default` cloud, nothing else set.
    pub fn new(service_type: impl Into<String>) -> Self {
        ManifestService {
            service_type: service_type.into(),
            cloud: "default".to_owned(),
            name: None,
            archive: None,
            startup_script: None,
            start: false,
            startup_instances: None,
            password: None,
            dump: None,
            volume_startup: None,
            unreadable: Vec::new(),
        }
    }

    setters! {
        cloud: into String,
        name: some into String,
        archive: some into String,
        startup_script: some into String,
        start: bool,
        startup_instances: some Vec<(String, String)>,
        password: some SecretString,
        dump: some into String,
        volume_startup: some VolumeStartup,
        unreadable: Vec<Unreadable>,
    }
}

/// `VolumeStartup`'s members; `None` when absent (sent as `null`, as 1.2 did).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VolumeStartup {
    /// `volumeName`.
    pub volume_name: Option<String>,
    /// `owner`.
    pub owner: Option<String>,
}

impl VolumeStartup {
    /// The volume `volume_name` of `owner`, each `None` when absent.
    pub fn new(volume_name: Option<String>, owner: Option<String>) -> Self {
        VolumeStartup { volume_name, owner }
    }
}

/// A manifest member of the wrong shape (1.2 failed with a 500 when it reached one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unreadable {
    /// The key (`Archive`, `StartupInstances`, ...).
    pub key: &'static str,
    /// What it should have been (`a URL`, `an object`).
    pub expected: &'static str,
}

impl Unreadable {
    /// The member `key` is not `expected` (`a URL`, `an object`).
    pub fn new(key: &'static str, expected: &'static str) -> Self {
        Unreadable { key, expected }
    }
}

/// Why a manifest stopped: the `msg` of the error object answered to the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ManifestFailure {
    message: String,
}

impl ManifestFailure {
    fn new(message: impl Into<String>) -> ManifestFailure {
        ManifestFailure {
            message: message.into(),
        }
    }

    /// A failure of the director itself: the detail goes to the log only.
    fn internal(error: &Error) -> ManifestFailure {
        tracing::warn!(error = %ErrorChain(&error), "manifest processing failed");
        ManifestFailure::new("internal error, see the director's log")
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A validated manifest holding one of its user's job slots; run it with
/// [`ManifestJob::run`] or [`ManifestJob::spawn`].
#[derive(Debug)]
pub struct ManifestJob {
    director: Director,
    uid: UserId,
    manifest: Manifest,
    _slot: JobSlot,
}

/// One running manifest of a user; the count goes down when it is dropped, however the job
/// ended (a panic included).
#[derive(Debug)]
struct JobSlot {
    director: Director,
    uid: UserId,
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        let mut counts = self
            .director
            .inner
            .manifest_jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.uid) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

/// The running manifests of each user.
pub(super) type JobCounts = std::sync::Mutex<HashMap<UserId, usize>>;

impl Director {
    /// Checks what can be checked before anything is created (URL schemes and literal
    /// addresses, member shapes, node counts, TaskFarm) and takes one of the user's job slots.
    /// A failure is answered at once, in both modes.
    pub fn prepare_manifest(
        &self,
        uid: UserId,
        manifest: Manifest,
    ) -> Result<ManifestJob, ManifestFailure> {
        for entry in &manifest.services {
            self.preflight(entry)?;
        }
        let max = self.inner.manifest.max_jobs_per_user;
        {
            let mut counts = self
                .inner
                .manifest_jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = counts.entry(uid).or_insert(0);
            if *count >= max {
                return Err(ManifestFailure::new(format!(
                    "Too many manifests in progress: at most {max} at a time, try again later"
                )));
            }
            *count += 1;
        }
        Ok(ManifestJob {
            director: self.clone(),
            uid,
            manifest,
            _slot: JobSlot {
                director: self.clone(),
                uid,
            },
        })
    }

    /// Whether a manifest entry's cloud is a dummy one (an unknown name is left to the start
    /// to report).
    fn on_dummy_cloud(&self, cloud: &str) -> bool {
        self.inner
            .clouds
            .get(cloud)
            .is_some_and(|registered| registered.cloud().driver() == "dummy")
    }

    fn preflight(&self, entry: &ManifestService) -> Result<(), ManifestFailure> {
        // Unknown types are reported when reached, after the application exists, as in 1.2.
        let Some(kind) = manifest_type(&entry.service_type) else {
            return Ok(());
        };
        let type_name = &entry.service_type;
        let applies = |key: &str| uses_key(kind, key, entry.start);
        if let Some(bad) = entry.unreadable.iter().find(|bad| applies(bad.key)) {
            return Err(ManifestFailure::new(format!(
                "Service {type_name}: {} must be {}",
                bad.key, bad.expected
            )));
        }
        if kind == ServiceType::Taskfarm && (entry.startup_script.is_some() || entry.start) {
            // A TaskFarm manager serves plain HTTP on port 8475, not the HTTPS JSON-RPC the
            // director speaks: 1.2 waited for it forever.
            return Err(ManifestFailure::new(
                "Service taskfarm: StartupScript and Start are not supported for taskfarm \
                 services (their manager does not serve the director's protocol); start it \
                 from its own client",
            ));
        }
        let policy = self.inner.fetcher.policy();
        for (key, url) in [
            ("Archive", &entry.archive),
            ("StartupScript", &entry.startup_script),
            ("Dump", &entry.dump),
        ] {
            if let Some(url) = url.as_deref().filter(|_| applies(key)) {
                fetch::check_url(url, policy)
                    .map_err(|error| refused_url(type_name, key, url, &error))?;
            }
        }
        if let (true, Some(given)) = (entry.start, &entry.startup_instances) {
            node_counts(kind, given).map_err(|message| {
                ManifestFailure::new(format!("Service {type_name}: {message}"))
            })?;
        }
        Ok(())
    }

    /// The processing proper, after validation.
    async fn process_manifest(
        &self,
        uid: UserId,
        manifest: Manifest,
    ) -> Result<(), ManifestFailure> {
        let Some(name) = manifest.application else {
            return Err(ManifestFailure::new("Application is not defined"));
        };
        // Looked up among the caller's applications only (1.2 took anyone's, then failed).
        let apps = self
            .applications(uid)
            .await
            .map_err(|error| ManifestFailure::internal(&error))?;
        let app = match apps
            .into_iter()
            .find(|app| app.name.as_deref() == Some(name.as_str()))
        {
            Some(app) => app,
            None => self
                .create_application(uid, &name)
                .await
                .map_err(|error| match error {
                    // Another request created it meanwhile.
                    Error::ApplicationNameTaken(_)
                    | Error::Invalid { .. }
                    | Error::LimitReached { .. } => ManifestFailure::new(error.to_string()),
                    other => ManifestFailure::internal(&other),
                })?,
        };
        for entry in &manifest.services {
            let Some(kind) = manifest_type(&entry.service_type) else {
                return Err(ManifestFailure::new(format!(
                    "Service {} does not exists",
                    entry.service_type
                )));
            };
            self.manifest_service(uid, &app, kind, entry).await?;
        }
        Ok(())
    }

    /// One service's procedure (spec §3.15 "Per-service procedure").
    async fn manifest_service(
        &self,
        uid: UserId,
        app: &Application,
        kind: ServiceType,
        entry: &ManifestService,
    ) -> Result<(), ManifestFailure> {
        // 1. Created as `/start` does.
        let start = StartRequest {
            uid,
            service_type: entry.service_type.clone(),
            cloud: entry.cloud.clone(),
            appid: Some(app.aid.to_string()),
        };
        let service = self.start_service(start).await.map_err(creation_failure)?;
        let sid = service.sid;
        let Some(host) = service.manager.clone() else {
            // A completed start always records the manager's address.
            return Err(ManifestFailure::internal(&Error::ServiceNotFound(sid)));
        };
        let manager = Manager {
            director: self,
            uid,
            sid,
            host,
        };
        // On the dummy cloud no manager normally answers (its VMs are files): one quick call
        // tells. Nobody there: an entry asking nothing of its manager is created and named, one
        // asking something fails at once (1.2 waited forever). Somebody there (a development or
        // test manager): the 1.2 procedure runs in full.
        if self.on_dummy_cloud(&entry.cloud)
            && kind != ServiceType::Taskfarm
            && self
                .inner
                .managers
                .get(&manager.host, "get_service_info", None)
                .await
                .is_err()
        {
            let asks_manager = entry.start
                || entry.startup_script.is_some()
                || (entry.archive.is_some()
                    && matches!(kind, ServiceType::Php | ServiceType::Java));
            if asks_manager {
                return Err(ManifestFailure::new(format!(
                    "Service {sid}: no manager answers on the dummy cloud, so its Archive, \
                     StartupScript or Start cannot be applied"
                )));
            }
            tracing::info!(sid = %sid, "no manager answers on the dummy cloud: created and named only");
            if let Some(name) = &entry.name {
                self.rename_service(uid, sid, name)
                    .await
                    .map_err(|error| match error {
                        Error::Invalid { .. } => ManifestFailure::new(error.to_string()),
                        other => ManifestFailure::internal(&other),
                    })?;
            }
            return Ok(());
        }
        // 2. The manager is up. TaskFarm managers do not speak the protocol: nothing is asked
        // of them (preflight refused the keys that would need it).
        if kind != ServiceType::Taskfarm {
            manager.wait_for_state("INIT").await?;
        }
        // 3. The name.
        if let Some(name) = &entry.name {
            self.rename_service(uid, sid, name)
                .await
                .map_err(|error| match error {
                    Error::Invalid { .. } => ManifestFailure::new(error.to_string()),
                    other => ManifestFailure::internal(&other),
                })?;
        }
        // 4. Code and startup script.
        match kind {
            ServiceType::Php => {
                if let Some(url) = &entry.archive {
                    manager.upload_archive(&entry.service_type, url).await?;
                }
                let environment = self.environment(uid, app, sid).await;
                let mut script = environment.into_bytes();
                let mut file_name = "env.sh".to_owned();
                if let Some(url) = &entry.startup_script {
                    let download = self
                        .download(&entry.service_type, "StartupScript", url, "startup.sh")
                        .await?;
                    script.extend_from_slice(&download.bytes);
                    file_name = download.file_name;
                }
                // Always uploaded for php, even empty, as 1.2 did.
                manager.upload_script(file_name, script).await?;
            }
            ServiceType::Java => {
                if let Some(url) = &entry.archive {
                    manager.upload_archive(&entry.service_type, url).await?;
                }
                manager
                    .startup_script(&entry.service_type, entry.startup_script.as_deref())
                    .await?;
            }
            _ => {
                manager
                    .startup_script(&entry.service_type, entry.startup_script.as_deref())
                    .await?;
            }
        }
        // 5.-6. Started, always on the manager's default cloud (1.2 ignored `Cloud` here).
        if !entry.start {
            return Ok(());
        }
        manager.post("startup", json!({"cloud": "default"})).await?;
        manager.wait_for_state("RUNNING").await?;
        // 7. After the start.
        match kind {
            ServiceType::Mysql => {
                if let Some(password) = &entry.password {
                    manager
                        .post(
                            "set_password",
                            json!({"user": "mysqldb", "password": password.expose_secret()}),
                        )
                        .await?;
                }
                if let Some(url) = &entry.dump {
                    let download = self
                        .download(&entry.service_type, "Dump", url, "dump.sql")
                        .await?;
                    manager
                        .upload(
                            "load_dump",
                            Upload {
                                field: "mysqldump_file",
                                file_name: download.file_name,
                                bytes: download.bytes,
                            },
                        )
                        .await?;
                }
            }
            ServiceType::Xtreemfs => {
                if let Some(volume) = &entry.volume_startup {
                    // 1.2 gave the first nodes 20 s to come up.
                    tokio::time::sleep(self.inner.manifest.volume_delay).await;
                    let empty = |member: &Option<String>| member.as_deref() == Some("");
                    if !empty(&volume.volume_name) && !empty(&volume.owner) {
                        manager
                            .post(
                                "createVolume",
                                json!({"volumeName": volume.volume_name, "owner": volume.owner}),
                            )
                            .await?;
                    }
                }
            }
            _ => {}
        }
        // 8. Scaled.
        if let Some(given) = &entry.startup_instances {
            let counts = node_counts(kind, given).map_err(|message| {
                ManifestFailure::new(format!("Service {}: {message}", entry.service_type))
            })?;
            let mut params = serde_json::Map::new();
            for (key, count) in counts {
                params.insert(key.to_owned(), json!(count));
            }
            params.insert("cloud".to_owned(), json!("default"));
            manager.post("add_nodes", Value::Object(params)).await?;
        }
        tracing::info!(sid = %sid, "manifest service ready");
        Ok(())
    }

    /// Downloads a manifest URL, failures as the user's error message.
    async fn download(
        &self,
        type_name: &str,
        key: &str,
        url: &str,
        fallback: &str,
    ) -> Result<fetch::Download, ManifestFailure> {
        let download = self
            .inner
            .fetcher
            .fetch(url, fallback)
            .await
            .map_err(|error| refused_url(type_name, key, url, &error))?;
        tracing::info!(key, url = %fetch::shown_url(url), bytes = download.bytes.len(), "manifest download");
        Ok(download)
    }

    /// The php environment snippet: the address of the application's MySQL master and
    /// XtreemFS directory node, for the agents' PHP-FPM and shell. What cannot be found is
    /// left out silently, as in 1.2.
    async fn environment(&self, uid: UserId, app: &Application, sid: ServiceId) -> String {
        let services = match self.application_services(uid, app.aid).await {
            Ok(services) => services,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot list the application's services");
                return String::new();
            }
        };
        let mut snippet = String::new();
        for (type_name, role, variable) in [
            ("mysql", "masters", "MYSQL_IP"),
            ("xtreemfs", "dir", "XTREEMFS_IP"),
        ] {
            let Some(service) = services
                .iter()
                .find(|service| service.service_type.as_deref() == Some(type_name))
            else {
                continue;
            };
            match self.node_address(service, role).await {
                Some(address) => {
                    snippet.push_str(&format!(
                        "echo \"env[{variable}]='{address}'\" >> {FPM_TEMPLATE}\n"
                    ));
                    snippet.push_str(&format!("export {variable}='{address}'\n"));
                }
                None => {
                    tracing::debug!(sid = %sid, other = %service.sid, type_name, "no address for the environment snippet");
                }
            }
        }
        snippet
    }

    /// The address of the first node of `role` of `service` (`list_nodes`, `get_node_info`).
    async fn node_address(&self, service: &Service, role: &str) -> Option<std::net::IpAddr> {
        let host = service.manager.as_deref()?;
        let managers = &self.inner.managers;
        let nodes = managers.get(host, "list_nodes", None).await.ok()?;
        let node = nodes.get(role)?.get(0)?.clone();
        let info = managers
            .get(host, "get_node_info", Some(json!({"serviceNodeId": node})))
            .await
            .ok()?;
        // The address goes into a shell script run on the agents: only an address is taken.
        info.get("serviceNode")?
            .get("ip")?
            .as_str()?
            .trim()
            .parse()
            .ok()
    }
}

impl ManifestJob {
    /// Runs the manifest to its end and answers the verdict. The run is a task of its own, so a
    /// client that hangs up does not stop it halfway.
    pub async fn run(self) -> Result<(), ManifestFailure> {
        let uid = self.uid;
        // The task's audit events are the request's.
        let context = super::audit::AuditContext::current();
        match tokio::spawn(context.scope(self.process())).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(uid = %uid, error = %ErrorChain(&error), "manifest task failed");
                Err(ManifestFailure::new(
                    "internal error, see the director's log",
                ))
            }
        }
    }

    /// Runs the manifest in the background; its outcome is logged (as 1.2's `thread` mode).
    pub fn spawn(self) {
        let uid = self.uid;
        let context = super::audit::AuditContext::current();
        tokio::spawn(context.scope(async move {
            match self.process().await {
                Ok(()) => tracing::info!(uid = %uid, "background manifest done"),
                Err(failure) => {
                    tracing::info!(uid = %uid, message = %failure, "background manifest failed")
                }
            }
        }));
    }

    async fn process(self) -> Result<(), ManifestFailure> {
        let span = tracing::info_span!("manifest", uid = %self.uid);
        let ManifestJob {
            director,
            uid,
            manifest,
            _slot: slot,
        } = self;
        let outcome = director
            .process_manifest(uid, manifest)
            .instrument(span)
            .await;
        // The slot is free once the work is done, before the verdict travels anywhere.
        drop(slot);
        outcome
    }
}

/// A service's manager, as one manifest step sees it.
struct Manager<'a> {
    director: &'a Director,
    uid: UserId,
    sid: ServiceId,
    host: String,
}

impl Manager<'_> {
    /// A manager's answer as the step's outcome: its `error` member is the message.
    fn outcome(
        &self,
        method: &str,
        result: Result<Value, manager_client::Error>,
    ) -> Result<Value, ManifestFailure> {
        match result {
            Ok(answer) => match manager_client::error_message(&answer) {
                Some(message) => {
                    tracing::info!(sid = %self.sid, method, %message, "manager refused a manifest step");
                    Err(ManifestFailure::new(message))
                }
                None => Ok(answer),
            },
            Err(error) => {
                tracing::warn!(sid = %self.sid, method, error = %ErrorChain(&error), "manager call failed");
                Err(ManifestFailure::new(format!(
                    "Service {}: the manager call {method} failed: {}",
                    self.sid,
                    call_failure(&error)
                )))
            }
        }
    }

    async fn post(&self, method: &str, params: Value) -> Result<Value, ManifestFailure> {
        let result = self
            .director
            .inner
            .managers
            .call(&self.host, method, params)
            .await;
        self.outcome(method, result)
    }

    async fn upload(&self, method: &str, file: Upload) -> Result<Value, ManifestFailure> {
        let result = self
            .director
            .inner
            .managers
            .upload(&self.host, method, file)
            .await;
        self.outcome(method, result)
    }

    async fn upload_script(
        &self,
        file_name: String,
        bytes: Vec<u8>,
    ) -> Result<Value, ManifestFailure> {
        self.upload(
            "upload_startup_script",
            Upload {
                field: "script",
                file_name,
                bytes,
            },
        )
        .await
    }

    /// `StartupScript` of the types without an environment snippet: uploaded when given.
    async fn startup_script(
        &self,
        type_name: &str,
        url: Option<&str>,
    ) -> Result<(), ManifestFailure> {
        let Some(url) = url else { return Ok(()) };
        let download = self
            .director
            .download(type_name, "StartupScript", url, "startup.sh")
            .await?;
        self.upload_script(download.file_name, download.bytes)
            .await?;
        Ok(())
    }

    /// `Archive`: uploaded as a new code version, then made the current one.
    async fn upload_archive(&self, type_name: &str, url: &str) -> Result<(), ManifestFailure> {
        let download = self
            .director
            .download(type_name, "Archive", url, "code")
            .await?;
        let answer = self
            .upload(
                "upload_code_version",
                Upload {
                    field: "code",
                    file_name: download.file_name,
                    bytes: download.bytes,
                },
            )
            .await?;
        let Some(version) = answer.get("codeVersionId").cloned() else {
            return Err(ManifestFailure::new(format!(
                "Service {}: the manager's answer to upload_code_version has no codeVersionId",
                self.sid
            )));
        };
        // 1.2 activated java code with the php method too; a java manager answers it.
        self.post(
            "update_php_configuration",
            json!({"codeVersionId": version}),
        )
        .await?;
        Ok(())
    }

    /// Polls `get_service_info` until the manager reports `state`: unreachable managers and
    /// other states are asked again after the poll interval, up to the state timeout. An
    /// `error` answer stops the run with its message.
    async fn wait_for_state(&self, state: &str) -> Result<(), ManifestFailure> {
        let settings = &self.director.inner.manifest;
        let started = Instant::now();
        let mut last_seen;
        loop {
            let result = self
                .director
                .inner
                .managers
                .get(&self.host, "get_service_info", None)
                .await;
            match result {
                Ok(answer) => {
                    if let Some(message) = manager_client::error_message(&answer) {
                        return Err(ManifestFailure::new(message));
                    }
                    match answer.get("state").and_then(Value::as_str) {
                        Some(seen) if seen == state => return Ok(()),
                        Some(seen) => last_seen = format!("state {seen}"),
                        None => last_seen = "an answer without a state".to_owned(),
                    }
                }
                Err(error) => {
                    tracing::debug!(sid = %self.sid, error = %ErrorChain(&error), "manager not reachable yet");
                    last_seen = call_failure(&error);
                }
            }
            let elapsed = started.elapsed();
            if elapsed >= settings.state_timeout {
                tracing::info!(sid = %self.sid, state, %last_seen, "gave up waiting for a manager");
                return Err(ManifestFailure::new(format!(
                    "Service {}: the manager did not reach state {state} within {} (last: {last_seen})",
                    self.sid,
                    seconds(settings.state_timeout)
                )));
            }
            tokio::time::sleep(settings.poll_interval.min(settings.state_timeout - elapsed)).await;
            // A service stopped meanwhile will never answer: stop waiting for it.
            match self.director.service_belongs_to(self.uid, self.sid).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ManifestFailure::new(format!(
                        "Service {} was stopped",
                        self.sid
                    )));
                }
                Err(error) => return Err(ManifestFailure::internal(&error)),
            }
        }
    }
}

/// A failed manager call, as the user sees it (the detail is logged).
fn call_failure(error: &manager_client::Error) -> String {
    match error {
        manager_client::Error::Status(status) => format!("the manager answered status {status}"),
        manager_client::Error::TooLarge { .. } => "the manager's answer is too large".to_owned(),
        error if error.is_timeout() => "the manager did not answer in time".to_owned(),
        _ => "the manager could not be reached".to_owned(),
    }
}

/// `1 s`, `1.5 s`, `600 s`.
fn seconds(duration: Duration) -> String {
    let text = format!("{:.3}", duration.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

fn refused_url(
    type_name: &str,
    key: &str,
    url: &str,
    error: &fetch::FetchError,
) -> ManifestFailure {
    let shown = fetch::shown_url(url);
    ManifestFailure::new(if error.is_refusal() {
        format!("Service {type_name}: {key} {shown} refused: {error}")
    } else {
        format!("Service {type_name}: {key} {shown} could not be downloaded: {error}")
    })
}

/// The `/start` failure of step 1 as the user's message (the 1.2 texts clients know).
fn creation_failure(error: Error) -> ManifestFailure {
    match error {
        Error::UnknownServiceType(_) | Error::ApplicationNotFound(_) => {
            ManifestFailure::new(error.to_string())
        }
        Error::InsufficientCredit
        | Error::UnknownCloud(_)
        | Error::StartTimeout
        | Error::Vpn(_) => {
            tracing::warn!(error = %ErrorChain(&error), "manifest service creation failed");
            ManifestFailure::new(format!("Error upon service creation: {error}"))
        }
        other => {
            tracing::warn!(error = %ErrorChain(&other), "manifest service creation failed");
            ManifestFailure::new(
                "Error upon service creation: internal error, see the director's log",
            )
        }
    }
}

/// The service type of a manifest `Type`, `None` for names a manifest may not use.
fn manifest_type(name: &str) -> Option<ServiceType> {
    if !MANIFEST_TYPES.contains(&name) {
        return None;
    }
    ServiceType::from_str(name).ok()
}

/// Whether the procedure of `kind` reads `key` (`started`: `Start` is truthy).
fn uses_key(kind: ServiceType, key: &str, started: bool) -> bool {
    match key {
        "Archive" => matches!(kind, ServiceType::Php | ServiceType::Java),
        "StartupScript" => true,
        "StartupInstances" => started,
        "Password" | "Dump" => started && kind == ServiceType::Mysql,
        "VolumeStartup" => started && kind == ServiceType::Xtreemfs,
        _ => false,
    }
}

/// The node kinds `add_nodes` takes for each type, each defaulting to one node.
fn node_kinds(kind: ServiceType) -> &'static [&'static str] {
    match kind {
        ServiceType::Php | ServiceType::Java => &["proxy", "web", "backend"],
        ServiceType::Mysql => &["slaves"],
        ServiceType::Scalaris => &["scalaris"],
        ServiceType::Hadoop => &["workers"],
        ServiceType::Selenium | ServiceType::Taskfarm => &["node"],
        ServiceType::Xtreemfs => &["osd"],
        ServiceType::Helloworld => &[],
    }
}

/// `add_nodes`'s counts: each kind of the type, 1 unless `StartupInstances` gives a number
/// (Python's `int()` of the value, as 1.2 read it); other members are ignored.
fn node_counts(
    kind: ServiceType,
    given: &[(String, String)],
) -> Result<Vec<(&'static str, i64)>, String> {
    node_kinds(kind)
        .iter()
        .map(
            |&node_kind| match given.iter().find(|(key, _)| key == node_kind) {
                None => Ok((node_kind, 1)),
                Some((_, text)) => super::parse_int(text)
                    .map(|count| (node_kind, count))
                    .ok_or_else(|| {
                        format!("StartupInstances {node_kind} must be an integer, not {text:?}")
                    }),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn node_counts_follow_1_2() {
        assert_eq!(
            node_counts(ServiceType::Php, &given(&[("backend", "5")])).unwrap(),
            vec![("proxy", 1), ("web", 1), ("backend", 5)]
        );
        assert_eq!(
            node_counts(ServiceType::Mysql, &given(&[("other", "x")])).unwrap(),
            vec![("slaves", 1)]
        );
        assert_eq!(
            node_counts(ServiceType::Xtreemfs, &given(&[("osd", " 3 ")])).unwrap(),
            vec![("osd", 3)]
        );
        assert_eq!(
            node_counts(ServiceType::Hadoop, &given(&[("workers", "many")])).unwrap_err(),
            "StartupInstances workers must be an integer, not \"many\""
        );
    }

    #[test]
    fn keys_apply_by_type() {
        assert!(uses_key(ServiceType::Php, "Archive", false));
        assert!(!uses_key(ServiceType::Mysql, "Archive", true));
        assert!(!uses_key(ServiceType::Mysql, "Dump", false));
        assert!(uses_key(ServiceType::Mysql, "Dump", true));
        assert!(uses_key(ServiceType::Selenium, "StartupScript", false));
        assert!(manifest_type("helloworld").is_none());
        assert_eq!(manifest_type("taskfarm"), Some(ServiceType::Taskfarm));
        assert_eq!(seconds(Duration::from_secs(600)), "600 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }
}
