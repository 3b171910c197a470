//! The director's metrics: prometheus-client counters and histograms in a registry of each
//! [`Director`](super::Director)'s own (no global recorder: two directors in one process, or
//! an embedder's own metrics, never mix), encoded in the Prometheus text format.
//!
//! The use-cases count what they do (certificates, logins, credit, services, cloud calls,
//! maintenance); the HTTP layer counts requests through [`Metrics::request`]. Label values
//! are bounded: routes are patterns, clouds and service types are configured names.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric as _, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
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
}

/// A service event (`conpaas_services_total{event}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ServiceEvent {
    Started,
    Stopped,
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
    DecrementResult { Applied => "applied", Refused => "refused", Deferred => "deferred" }
    ServiceEvent { Started => "started", Stopped => "stopped", Failed => "failed" }
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
struct CloudLabels {
    cloud: String,
    call: CloudCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MaintenanceLabels {
    action: MaintenanceAction,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 250 µs to 60 s (a `/start` waits for its VM).
fn request_histogram() -> Histogram {
    Histogram::new([
        0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        10.0, 30.0, 60.0,
    ])
}

/// Cloud call latencies: 10 ms to 10 min (a VM boot).
fn cloud_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ])
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
    cloud_seconds: Histograms<CloudLabels>,
    cloud_errors: Family<CloudLabels, Counter>,
    maintenance: Family<MaintenanceLabels, Counter>,
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
        let cloud_seconds: Histograms<CloudLabels> = Family::new_with_constructor(cloud_histogram);
        let cloud_errors = Family::<CloudLabels, Counter>::default();
        let maintenance = Family::<MaintenanceLabels, Counter>::default();
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
            "conpaas_maintenance",
            "What maintenance did: starts reconciled, VMs reaped, deferred charges applied",
            maintenance.clone(),
        );
        registry.register_collector(Box::new(KeyPoolCollector { ca }));
        Metrics {
            registry,
            requests,
            request_seconds,
            certificates,
            logins,
            decrements,
            services,
            cloud_seconds,
            cloud_errors,
            maintenance,
        }
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
            .observe(latency.as_secs_f64());
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

    pub(crate) fn cloud_call(&self, cloud: &str, call: CloudCall, took: Duration, failed: bool) {
        let labels = CloudLabels {
            cloud: cloud.to_owned(),
            call,
        };
        self.cloud_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.cloud_errors.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn maintenance(&self, action: MaintenanceAction, count: usize) {
        if count > 0 {
            self.maintenance
                .get_or_create(&MaintenanceLabels { action })
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }
}
