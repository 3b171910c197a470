//! [`Clock`]: where the director reads the time of day it records and compares (a service's
//! `created`, grace periods). Always UTC, so that a daylight-saving jump of local time can
//! neither age a start that is still running nor hide one a crash interrupted.

/// The director's source of the current time (UTC). [`SystemClock`] by default; a simulation
/// gives one derived from tokio's paused clock so that a seed replays exactly.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}
