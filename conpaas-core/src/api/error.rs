//! The one map from `director::Error` to a 1.2 answer. Internals go to the log, never to clients.

use crate::model::ErrorChain;
use axum::http::StatusCode;
use axum::response::Response;

use super::answer::{self, Cors};
use crate::director::{Error, Outcome};

/// What a failed use-case answers, given the route's error shape.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// Routes answering error objects (`/start`, `/createapp`, `/new_user`...).
    ErrorObject {
        /// Prefix of messages about unexpected failures (`Error upon service creation: `).
        prefix: &'static str,
    },
    /// Routes whose only failure answer is `false` or a status (`/stop`, `/delete`...).
    FalseOrStatus,
}

/// A 500 with a generic page; the detail goes to the log.
pub(super) fn internal(error: &Error) -> Response {
    tracing::warn!(error = %ErrorChain(error), "internal error");
    answer::html_status(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Maps `error` for a route of `shape`. Exhaustive on purpose: a new variant must be decided.
pub(super) fn respond(error: &Error, shape: Shape) -> Response {
    let message = match error {
        // Domain outcomes clients show to people: 1.2's exact texts.
        Error::UsernameTaken(_)
        | Error::EmailTaken(_)
        | Error::UsernameReserved(_)
        | Error::ApplicationNotFound(_)
        | Error::UnknownServiceType(_)
        | Error::ApplicationNameTaken(_)
        | Error::Invalid { .. } => {
            tracing::info!(error = %ErrorChain(error), "request refused");
            error.to_string()
        }
        Error::ServiceNotFound(_) => {
            tracing::info!(error = %ErrorChain(error), "request refused");
            return answer::no(Cors::Yes);
        }
        // Failures of a start, in words without internals.
        Error::InsufficientCredit
        | Error::StartTimeout
        | Error::UnknownCloud(_)
        | Error::LimitReached { .. } => {
            tracing::info!(error = %ErrorChain(error), "service creation failed");
            match shape {
                Shape::ErrorObject { prefix } => format!("{prefix}{error}"),
                Shape::FalseOrStatus => return internal(error),
            }
        }
        Error::Vpn(vpn) => {
            tracing::warn!(error = %ErrorChain(error), "vpn planning failed");
            match shape {
                Shape::ErrorObject { prefix } => format!("{prefix}{vpn}"),
                Shape::FalseOrStatus => return internal(error),
            }
        }
        Error::Cloud(cloud) => {
            tracing::warn!(error = %ErrorChain(error), "cloud call failed");
            match shape {
                Shape::ErrorObject { prefix } => format!("{prefix}{}", cloud_summary(cloud)),
                Shape::FalseOrStatus => return internal(error),
            }
        }
        Error::NotConfigured(_)
        | Error::Bootstrap(_)
        | Error::Config(_)
        | Error::Store(_)
        | Error::Ca(_)
        | Error::Templates(_)
        | Error::MetricsToken { .. }
        | Error::CaExists(_)
        | Error::EmptyDatabase { .. }
        | Error::ForeignDatabase { .. }
        | Error::CloudsUnlisted(_)
        // The operator's account commands: no route makes them.
        | Error::UnknownUser(_)
        | Error::AmbiguousUser { .. }
        | Error::CreditBelowZero { .. }
        | Error::CreditOverflow { .. }
        | Error::UserHasServices { .. }
        | Error::Cancelled => {
            tracing::warn!(error = %ErrorChain(error), "internal error");
            match shape {
                Shape::ErrorObject { prefix } => {
                    format!("{prefix}internal error, see the director's log")
                }
                Shape::FalseOrStatus => {
                    return answer::html_status(StatusCode::INTERNAL_SERVER_ERROR);
                }
            }
        }
    };
    match shape {
        Shape::ErrorObject { .. } => {
            let mut response = answer::error_object(&message, Cors::Yes);
            if internal_failure(error) {
                response.extensions_mut().insert(Outcome::Error);
            }
            response
        }
        Shape::FalseOrStatus => answer::no(Cors::Yes),
    }
}

/// Whether an error object tells of the director's failure rather than a refusal (the
/// request log's `outcome`: `error`, not `refused`).
fn internal_failure(error: &Error) -> bool {
    !matches!(
        error,
        Error::UsernameTaken(_)
            | Error::EmailTaken(_)
            | Error::UsernameReserved(_)
            | Error::ApplicationNotFound(_)
            | Error::UnknownServiceType(_)
            | Error::ApplicationNameTaken(_)
            | Error::Invalid { .. }
            | Error::ServiceNotFound(_)
            | Error::InsufficientCredit
            | Error::UnknownCloud(_)
    )
}

/// A cloud failure in words a user may see: the kind, not the cloud's raw answer.
fn cloud_summary(error: &crate::cloud::Error) -> String {
    match error {
        crate::cloud::Error::Refused { code, .. } => format!("the cloud refused the VM ({code})"),
        crate::cloud::Error::Misconfigured { key, .. } => {
            format!("the cloud refused the VM (its {key} is misconfigured)")
        }
        crate::cloud::Error::Unavailable(_) | crate::cloud::Error::Driver { .. } => {
            "the cloud is unavailable".to_owned()
        }
        crate::cloud::Error::BootTimeout { seconds, .. } => {
            format!("the manager VM was not ready after {seconds} s")
        }
        crate::cloud::Error::Failed(_) => "the manager VM failed while booting".to_owned(),
        crate::cloud::Error::Io(_) | crate::cloud::Error::Unsupported { .. } => {
            "the cloud driver failed".to_owned()
        }
    }
}
