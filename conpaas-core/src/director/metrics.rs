//! The director's metrics: prometheus-client counters and histograms in a registry of each
//! [`Director`](super::Director)'s own (no global recorder: two directors in one process, or
//! an embedder's own metrics, never mix), encoded in the Prometheus text format.
//!
//! The use-cases count what they do (certificates, logins, credit, services, cloud calls,
//! maintenance); the HTTP layer counts requests through [`Metrics::request`]. Label values
//! are bounded: routes are patterns, clouds and service types are configured names.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::ca::CertificateAuthority;
use crate::model::Role;

/// The `Content-Type` of [`Metrics::encode`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How a request ended, for the request log's `outcome` field and the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Done as asked.
    Ok,
    /// Refused: bad credentials, not the caller's, invalid input, unknown path (a 4xx, or a
    /// 1.2 `false` / error object with status 200).
    Refused,
    /// Refused without looking: too many failed logins from the source, or the password
    /// hashing queue full.
    Throttled,
    /// The director failed (a 5xx, or an error object about an internal failure).
    Error,
}

impl Outcome {
    /// The word logged and used as label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Throttled => "throttled",
            Outcome::Error => "error",
        }
    }

    /// The outcome an HTTP status says by itself (when the answer says nothing more).
    pub fn of_status(status: u16) -> Outcome {
        match status {
            0..400 => Outcome::Ok,
            400..500 => Outcome::Refused,
            _ => Outcome::Error,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// What a login attempt came to (`conpaas_logins_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LoginResult {
    Accepted,
    Refused,
    Throttled,
}

/// What a manager's credit decrement came to (`conpaas_credit_decrements_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DecrementResult {
    Applied,
    Refused,
    Deferred,
    /// Deferred, but the journal could not be written: held in memory only.
    DeferredUnjournaled,
}

/// A service event (`conpaas_services_total{event}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ServiceEvent {
    Started,
    Stopped,
    Failed,
}

/// An agent VM event (`conpaas_agent_vms_total{event}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AgentEvent {
    Created,
    Terminated,
    Refused,
    Failed,
}

/// A cloud call (`conpaas_cloud_call_seconds{call}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CloudCall {
    CreateNode,
    KillNode,
    NodeState,
    FindNode,
    ListNodes,
    Probe,
}

/// What maintenance did (`conpaas_maintenance_total{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MaintenanceAction {
    Reconciled,
    Reaped,
    DeferredCharges,
}

macro_rules! label_words {
    ($($ty:ty { $($variant:ident => $word:literal),* $(,)? })*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                let word = match self { $(<$ty>::$variant => $word),* };
                std::fmt::Write::write_str(encoder, word)
            }
        }
    )*};
}

label_words! {
    LoginResult { Accepted => "accepted", Refused => "refused", Throttled => "throttled" }
    DecrementResult {
        Applied => "applied", Refused => "refused", Deferred => "deferred",
        DeferredUnjournaled => "deferred_unjournaled",
    }
    ServiceEvent { Started => "started", Stopped => "stopped", Failed => "failed" }
    AgentEvent {
        Created => "created", Terminated => "terminated", Refused => "refused", Failed => "failed",
    }
    CloudCall {
        CreateNode => "create_node", KillNode => "kill_node", NodeState => "node_state",
        FindNode => "find_node", ListNodes => "list_nodes", Probe => "probe",
    }
    MaintenanceAction {
        Reconciled => "reconciled", Reaped => "reaped", DeferredCharges => "deferred_charges",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabels {
    result: LoginResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecrementLabels {
    result: DecrementResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceLabels {
    event: ServiceEvent,
    cloud: String,
    r#type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentLabels {
    event: AgentEvent,
    cloud: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloudLabels {
    cloud: String,
    call: CloudCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloudUpLabels {
    cloud: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MaintenanceLabels {
    action: MaintenanceAction,
}

type Histograms<L> = Family<L, Seconds, fn() -> Seconds>;

/// Request latencies: 250 µs to 60 s (a `/start` waits for its VM).
const REQUEST_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// Cloud call latencies: 10 ms to 10 min (a VM boot).
const CLOUD_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

fn request_histogram() -> Seconds {
    Seconds::new(REQUEST_BUCKETS)
}

fn cloud_histogram() -> Seconds {
    Seconds::new(CLOUD_BUCKETS)
}

/// A histogram of durations kept in atomics: every request observes one, from every worker
/// thread at once, and prometheus-client's `Histogram` takes a mutex per observation (its
/// contention put futex calls on the request path). The sum is kept in nanoseconds.
#[derive(Debug, Clone)]
struct Seconds {
    inner: Arc<SecondsInner>,
}

#[derive(Debug)]
struct SecondsInner {
    /// Upper bounds, seconds, ascending; an implicit `+Inf` bucket follows.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Seconds {
    fn new(bounds: &'static [f64]) -> Seconds {
        Seconds {
            inner: Arc::new(SecondsInner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let inner = &*self.inner;
        let bucket = inner
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(inner.bounds.len());
        if let Some(count) = inner.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for Seconds {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Seconds {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(
                inner
                    .counts
                    .iter()
                    .map(|count| count.load(Ordering::Relaxed)),
            )
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        #[expect(
            clippy::cast_precision_loss,
            reason = "exact up to 2^53 ns (104 days of summed latency), rounded beyond"
        )]
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `conpaas_audit_events_dropped_total`'s label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditDropLabels {
    priority: &'static str,
}

/// The metrics of one director. Cheap to share (every family is reference-counted); get it
/// with [`Director::metrics`](super::Director::metrics).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabels>,
    certificates: Family<RoleLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    decrements: Family<DecrementLabels, Counter>,
    services: Family<ServiceLabels, Counter>,
    agents: Family<AgentLabels, Counter>,
    cloud_seconds: Histograms<CloudLabels>,
    cloud_errors: Family<CloudLabels, Counter>,
    cloud_up: Family<CloudUpLabels, prometheus_client::metrics::gauge::Gauge>,
    state: StateGauges,
    maintenance: Family<MaintenanceLabels, Counter>,
    audit_dropped: Family<AuditDropLabels, Counter>,
    vms_untracked: Counter,
    reaper_held: prometheus_client::metrics::gauge::Gauge,
    reaper_withheld: prometheus_client::metrics::gauge::Gauge,
    transport: TransportSlot,
}

/// What the database holds, set at each scrape ([`Metrics::set_state`]).
#[derive(Debug, Default)]
struct StateGauges {
    users: Gauge,
    applications: Gauge,
    services_starting: Gauge,
    services_running: Family<CloudUpLabels, Gauge>,
    agents_running: Family<CloudUpLabels, Gauge>,
    credit: Gauge,
    /// The registered clouds: each has a `services_running` series, 0 when none runs.
    clouds: std::sync::Mutex<Vec<String>>,
}

/// The transport's metrics (connections admitted, refused, evicted, timed out), attached by the
/// listener serving this director ([`Metrics::attach_transport`]): the director knows nothing of
/// connections, and a director served by an embedder's own transport has none.
#[derive(Debug, Clone, Default)]
struct TransportSlot(Arc<std::sync::RwLock<Option<Arc<dyn Collector>>>>);

impl Collector for TransportSlot {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let attached = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match attached {
            Some(collector) => collector.encode(encoder),
            None => Ok(()),
        }
    }
}

/// The key pool's depth, read at each scrape.
#[derive(Debug)]
struct KeyPoolCollector {
    ca: Arc<CertificateAuthority>,
}

impl Collector for KeyPoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (ready, size) = self
            .ca
            .key_pool_stats()
            .map_or((0, 0), |stats| (stats.ready, stats.size));
        for (name, help, value) in [
            (
                "conpaas_key_pool_ready",
                "RSA keys generated ahead of demand and ready to be used",
                ready,
            ),
            (
                "conpaas_key_pool_size",
                "RSA keys the pool keeps ready (0: no pool)",
                size,
            ),
        ] {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Every family, registered; the key pool's depth is read from `ca` at each scrape.
    pub(crate) fn new(ca: Arc<CertificateAuthority>) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: Histograms<RouteLabels> =
            Family::new_with_constructor(request_histogram);
        let certificates = Family::<RoleLabels, Counter>::default();
        let logins = Family::<LoginLabels, Counter>::default();
        let decrements = Family::<DecrementLabels, Counter>::default();
        let services = Family::<ServiceLabels, Counter>::default();
        let agents = Family::<AgentLabels, Counter>::default();
        let cloud_seconds: Histograms<CloudLabels> = Family::new_with_constructor(cloud_histogram);
        let cloud_errors = Family::<CloudLabels, Counter>::default();
        let cloud_up = Family::<CloudUpLabels, prometheus_client::metrics::gauge::Gauge>::default();
        let maintenance = Family::<MaintenanceLabels, Counter>::default();
        let audit_dropped = Family::<AuditDropLabels, Counter>::default();
        // Series of closed label sets from the start: an alert or a rate() sees 0, not nothing.
        for result in [
            LoginResult::Accepted,
            LoginResult::Refused,
            LoginResult::Throttled,
        ] {
            drop(logins.get_or_create(&LoginLabels { result }));
        }
        for result in [
            DecrementResult::Applied,
            DecrementResult::Refused,
            DecrementResult::Deferred,
            DecrementResult::DeferredUnjournaled,
        ] {
            drop(decrements.get_or_create(&DecrementLabels { result }));
        }
        for role in [Role::User, Role::Manager, Role::Agent] {
            drop(certificates.get_or_create(&RoleLabels {
                role: role.as_str(),
            }));
        }
        for action in [
            MaintenanceAction::Reconciled,
            MaintenanceAction::Reaped,
            MaintenanceAction::DeferredCharges,
        ] {
            drop(maintenance.get_or_create(&MaintenanceLabels { action }));
        }
        // Both series from the start: an alert on them sees 0, not nothing.
        for priority in ["low", "high"] {
            drop(audit_dropped.get_or_create(&AuditDropLabels { priority }));
        }
        let vms_untracked = Counter::default();
        let reaper_held = prometheus_client::metrics::gauge::Gauge::default();
        let reaper_withheld = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "conpaas_http_requests",
            "HTTP requests answered, by route pattern, method, status and outcome",
            requests.clone(),
        );
        registry.register(
            "conpaas_http_request_duration_seconds",
            "Time to answer an HTTP request, by route pattern",
            request_seconds.clone(),
        );
        registry.register(
            "conpaas_certificates_issued",
            "Certificates issued, by role (user, manager, agent)",
            certificates.clone(),
        );
        registry.register(
            "conpaas_logins",
            "Password checks (/login, /getcerts): accepted, refused, throttled",
            logins.clone(),
        );
        registry.register(
            "conpaas_credit_decrements",
            "Managers' credit decrements: applied, refused (not covered or invalid), \
             deferred (the database failed; applied by the next maintenance pass)",
            decrements.clone(),
        );
        registry.register(
            "conpaas_services",
            "Service events (started, stopped, failed starts), by cloud and service type",
            services.clone(),
        );
        registry.register(
            "conpaas_agent_vms",
            "Agent VMs managers asked the director for: created, terminated, refused (service \
             not running, a cap reached), failed (the cloud failed), by cloud",
            agents.clone(),
        );
        registry.register(
            "conpaas_cloud_call_duration_seconds",
            "Time of each cloud call, by cloud and call",
            cloud_seconds.clone(),
        );
        registry.register(
            "conpaas_cloud_call_errors",
            "Cloud calls that failed, by cloud and call",
            cloud_errors.clone(),
        );
        registry.register(
            "conpaas_cloud_up",
            "1 when the cloud answered its last probe (credentials, image, network...) and 0 \
             when not, by cloud; probed at start and at each maintenance interval",
            cloud_up.clone(),
        );
        registry.register(
            "conpaas_maintenance",
            "What maintenance did: starts reconciled, VMs reaped, deferred charges applied",
            maintenance.clone(),
        );
        registry.register(
            "conpaas_audit_events_dropped",
            "Audit events dropped because their queue was full (the database failing or behind), \
             by priority: low (refused and throttled logins), high (everything else)",
            audit_dropped.clone(),
        );
        registry.register(
            "conpaas_reaper_held",
            "1 while the reaper terminates nothing because a cloud listed a VM whose service id \
             the database never gave (a restored older backup), until `director reaper \
             --confirm-restore`",
            reaper_held.clone(),
        );
        registry.register(
            "conpaas_reaper_withheld_vms",
            "VMs without a service row that the last reaper pass reported but did not terminate \
             (REAPER = report, or the reaper held)",
            reaper_withheld.clone(),
        );
        registry.register(
            "conpaas_vms_untracked",
            "VMs a start created after its row was gone that could neither be terminated nor \
             recorded (a cloud and the database failing together): only the reaper finds them",
            vms_untracked.clone(),
        );
        let state = StateGauges::default();
        for (name, help, gauge) in [
            ("conpaas_users", "Accounts", &state.users),
            ("conpaas_applications", "Applications", &state.applications),
            (
                "conpaas_services_starting",
                "Services whose manager VM is being created",
                &state.services_starting,
            ),
            (
                "conpaas_credit_outstanding",
                "The credit of every user, summed: what managers may still charge",
                &state.credit,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "conpaas_services_running",
            "Services with their manager VM, by cloud",
            state.services_running.clone(),
        );
        registry.register(
            "conpaas_agents_running",
            "Agent VMs started through the director and not yet terminated, by cloud",
            state.agents_running.clone(),
        );
        registry.register(
            "conpaas_build",
            "This build of the director: its version",
            prometheus_client::metrics::info::Info::new(vec![(
                "version",
                env!("CARGO_PKG_VERSION"),
            )]),
        );
        registry.register_collector(Box::new(super::process_metrics::ProcessCollector));
        registry.register_collector(Box::new(KeyPoolCollector { ca }));
        let transport = TransportSlot::default();
        registry.register_collector(Box::new(transport.clone()));
        Metrics {
            registry,
            requests,
            request_seconds,
            certificates,
            logins,
            decrements,
            services,
            agents,
            cloud_seconds,
            cloud_errors,
            cloud_up,
            state,
            maintenance,
            audit_dropped,
            vms_untracked,
            reaper_held,
            reaper_withheld,
            transport,
        }
    }

    /// Encodes `collector`, the metrics of the transport serving this director, with the
    /// director's own (in [`Metrics::encode`] and [`Metrics::registry`]). A later call replaces
    /// it: one listener's counters at a time (`api::server::Listener::serve_director` attaches
    /// its own).
    pub fn attach_transport(&self, collector: Arc<dyn Collector>) {
        *self
            .transport
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(collector);
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// The registry, for an embedder encoding it with its own metrics (prometheus-client).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one answered HTTP request. `route` is the route pattern (never the URL, which
    /// may carry passwords), `method` the method's name.
    pub fn request(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        outcome: Outcome,
        latency: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
                outcome,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(latency);
    }

    pub(crate) fn certificate_issued(&self, role: Role) {
        self.certificates
            .get_or_create(&RoleLabels {
                role: role.as_str(),
            })
            .inc();
    }

    pub(crate) fn login(&self, result: LoginResult) {
        self.logins.get_or_create(&LoginLabels { result }).inc();
    }

    pub(crate) fn decrement(&self, result: DecrementResult) {
        self.decrements
            .get_or_create(&DecrementLabels { result })
            .inc();
    }

    pub(crate) fn service(&self, event: ServiceEvent, cloud: &str, service_type: &str) {
        self.services
            .get_or_create(&ServiceLabels {
                event,
                cloud: cloud.to_owned(),
                r#type: service_type.to_owned(),
            })
            .inc();
    }

    pub(crate) fn agent(&self, event: AgentEvent, cloud: &str) {
        self.agents
            .get_or_create(&AgentLabels {
                event,
                cloud: cloud.to_owned(),
            })
            .inc();
    }

    pub(crate) fn cloud_call(&self, cloud: &str, call: CloudCall, took: Duration, failed: bool) {
        let labels = CloudLabels {
            cloud: cloud.to_owned(),
            call,
        };
        self.cloud_seconds.get_or_create(&labels).observe(took);
        if failed {
            self.cloud_errors.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn cloud_up(&self, cloud: &str, up: bool) {
        self.cloud_up
            .get_or_create(&CloudUpLabels {
                cloud: cloud.to_owned(),
            })
            .set(i64::from(up));
    }

    /// The cloud call error series of each of `clouds` at 0, before any call.
    pub(crate) fn declare_clouds<'a>(&self, clouds: impl IntoIterator<Item = &'a str>) {
        for cloud in clouds {
            self.state
                .clouds
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(cloud.to_owned());
            for event in [
                AgentEvent::Created,
                AgentEvent::Terminated,
                AgentEvent::Refused,
                AgentEvent::Failed,
            ] {
                drop(self.agents.get_or_create(&AgentLabels {
                    event,
                    cloud: cloud.to_owned(),
                }));
            }
            for call in [
                CloudCall::CreateNode,
                CloudCall::KillNode,
                CloudCall::NodeState,
                CloudCall::FindNode,
                CloudCall::ListNodes,
                CloudCall::Probe,
            ] {
                drop(self.cloud_errors.get_or_create(&CloudLabels {
                    cloud: cloud.to_owned(),
                    call,
                }));
            }
        }
    }

    /// The state gauges, from what the database holds now.
    pub(crate) fn set_state(&self, counts: &crate::store::StateCounts) {
        let state = &self.state;
        state.users.set(counts.users);
        state.applications.set(counts.applications);
        state.services_starting.set(counts.services_starting);
        state.credit.set(counts.credit);
        // Rebuilt: a cloud removed from the configuration leaves; a registered one reads 0.
        state.services_running.clear();
        state.agents_running.clear();
        for cloud in state
            .clouds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let labels = CloudUpLabels {
                cloud: cloud.clone(),
            };
            drop(state.services_running.get_or_create(&labels));
            drop(state.agents_running.get_or_create(&labels));
        }
        for (cloud, n) in &counts.agents_running {
            state
                .agents_running
                .get_or_create(&CloudUpLabels {
                    cloud: cloud.clone(),
                })
                .set(*n);
        }
        for (cloud, n) in &counts.services_running {
            state
                .services_running
                .get_or_create(&CloudUpLabels {
                    cloud: cloud.clone(),
                })
                .set(*n);
        }
    }

    pub(crate) fn audit_dropped(&self, priority: super::audit::Priority, count: u64) {
        self.audit_dropped
            .get_or_create(&AuditDropLabels {
                priority: priority.as_str(),
            })
            .inc_by(count);
    }

    pub(crate) fn vm_untracked(&self) {
        self.vms_untracked.inc();
    }

    pub(crate) fn reaper(&self, held: bool, withheld: usize) {
        self.reaper_held.set(i64::from(held));
        self.reaper_withheld
            .set(i64::try_from(withheld).unwrap_or(i64::MAX));
    }

    pub(crate) fn maintenance(&self, action: MaintenanceAction, count: usize) {
        if count > 0 {
            self.maintenance
                .get_or_create(&MaintenanceLabels { action })
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_latencies_encode_as_cumulative_buckets_with_sum_and_count() {
        let ca = CertificateAuthority::generate(crate::ca::KeyAlgorithm::EcdsaP256).unwrap();
        let metrics = Metrics::new(Arc::new(ca));
        for micros in [100, 300, 300, 2_000_000, 90_000_000] {
            metrics.request(
                "/listapp",
                "GET",
                200,
                Outcome::Ok,
                Duration::from_micros(micros),
            );
        }
        metrics.request("/login", "POST", 200, Outcome::Throttled, Duration::ZERO);
        let text = metrics.encode();
        for line in [
            r#"conpaas_http_request_duration_seconds_bucket{route="/listapp",le="0.00025"} 1"#,
            r#"conpaas_http_request_duration_seconds_bucket{route="/listapp",le="0.0005"} 3"#,
            r#"conpaas_http_request_duration_seconds_bucket{route="/listapp",le="1"} 3"#,
            r#"conpaas_http_request_duration_seconds_bucket{route="/listapp",le="2.5"} 4"#,
            r#"conpaas_http_request_duration_seconds_bucket{route="/listapp",le="60"} 4"#,
            r#"conpaas_http_request_duration_seconds_bucket{route="/listapp",le="+Inf"} 5"#,
            r#"conpaas_http_request_duration_seconds_sum{route="/listapp"} 92.0007"#,
            r#"conpaas_http_request_duration_seconds_count{route="/listapp"} 5"#,
            r#"conpaas_http_requests_total{route="/listapp",method="GET",status="200",outcome="ok"} 5"#,
            r#"conpaas_http_requests_total{route="/login",method="POST",status="200",outcome="throttled"} 1"#,
            "# TYPE conpaas_http_request_duration_seconds histogram",
            "conpaas_key_pool_size 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
