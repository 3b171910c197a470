//! Who is calling: the verified client certificate's ConPaaS attributes, checked against the
//! database with 1.2's rules (certificates.md §10.3) and the project's role checks.

use std::sync::Arc;

use axum::response::Response;
use rustls_pki_types::CertificateDer;

use super::answer::{self, Cors};
use super::server::PeerInfo;
use crate::ca::CertIdentity;
use crate::director::Director;
use crate::model::{Role, ServiceId, User, UserId};

pub(super) const NO_UID: &str = "cert_required: client certificate does NOT provide UID";
pub(super) const NO_SERVICE_LOCATOR: &str =
    "cert_required: client certificate does NOT provide serviceLocator";

/// The identity in the peer's certificate, if it presented one.
pub(super) fn identity(peer: Option<&PeerInfo>) -> Option<CertIdentity> {
    let certificate: &Arc<CertificateDer<'static>> = peer?.certificate.as_ref()?;
    CertIdentity::parse(certificate.as_ref()).ok()
}

/// A short description of the caller for the request log (never a secret).
pub(super) fn describe(peer: Option<&PeerInfo>) -> String {
    match identity(peer) {
        None => "anonymous".to_owned(),
        Some(id) => match (
            id.role.as_deref(),
            id.uid.as_deref(),
            id.service_locator.as_deref(),
        ) {
            (Some("frontend"), _, _) => "frontend".to_owned(),
            (Some(role @ ("manager" | "agent")), Some(uid), Some(sid)) => {
                format!("{role}:{uid}/{sid}")
            }
            (Some(role), Some(uid), _) => format!("{role}:{uid}"),
            (role, _, _) => format!("cert:{}", role.unwrap_or("?")),
        },
    }
}

/// The user rule: a certificate with an integer `UID` of an existing user and `role=user`.
/// Answers as 1.2 did: 401 without a usable UID, 200 `false` for an unknown user; a wrong role
/// (a manager's or agent's certificate driving its owner's account) is answered like an
/// unknown user.
pub(super) async fn user(director: &Director, peer: Option<&PeerInfo>) -> Result<User, Response> {
    let Some(identity) = identity(peer) else {
        return Err(answer::unauthorized(NO_UID));
    };
    let Some(uid) = identity.user_id() else {
        return Err(answer::unauthorized(NO_UID));
    };
    if !identity.has_role(Role::User) {
        return Err(answer::no(Cors::Yes));
    }
    match director.user(uid).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(answer::no(Cors::Yes)),
        Err(error) => Err(super::error::internal(&error)),
    }
}

/// The manager rule: `UID` and `serviceLocator` integers, `role=manager`, the service live
/// and owned by that user.
pub(super) async fn manager(
    director: &Director,
    peer: Option<&PeerInfo>,
) -> Result<(UserId, ServiceId), Response> {
    let Some(identity) = identity(peer) else {
        return Err(answer::unauthorized(NO_UID));
    };
    let Some(uid) = identity.user_id() else {
        return Err(answer::unauthorized(NO_UID));
    };
    let Some(sid) = identity.service_id() else {
        return Err(answer::unauthorized(NO_SERVICE_LOCATOR));
    };
    if !identity.has_role(Role::Manager) {
        return Err(answer::no(Cors::Yes));
    }
    match director.service_belongs_to(uid, sid).await {
        Ok(true) => Ok((uid, sid)),
        Ok(false) => Err(answer::no(Cors::Yes)),
        Err(error) => Err(super::error::internal(&error)),
    }
}

/// Whether the caller holds the director's own certificate (the PHP frontend does).
pub(super) fn is_frontend(peer: Option<&PeerInfo>) -> bool {
    identity(peer).is_some_and(|id| id.has_role(Role::Frontend))
}
