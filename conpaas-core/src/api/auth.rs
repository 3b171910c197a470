//! Who is calling: the verified client certificate's ConPaaS attributes, checked against the
//! database with 1.2's rules (certificates.md §10.3) and the project's role checks.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
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

/// The parsed identity of a connection's client certificate, which the listener adds to every
/// request of the connection beside its [`PeerInfo`], so that a kept-alive connection's
/// certificate is parsed once, not once per request (it was a fifth of `/listapp`'s CPU). It
/// keeps the certificate it was parsed from: a `PeerInfo` with another certificate (an
/// embedder's layer replacing the listener's) is parsed anew. Only the identity is kept;
/// whether its user or service still exists is checked at every request.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionIdentity {
    certificate: Arc<CertificateDer<'static>>,
    identity: Option<Arc<CertIdentity>>,
}

impl ConnectionIdentity {
    /// The identity of `peer`'s certificate; `None` for an anonymous peer.
    #[cfg(feature = "server")]
    pub(crate) fn of(peer: &PeerInfo) -> Option<ConnectionIdentity> {
        let certificate = peer.certificate.clone()?;
        let identity = match CertIdentity::parse_client(certificate.as_ref()) {
            Ok(identity) => Some(Arc::new(identity)),
            Err(error) => {
                tracing::info!(error = %crate::model::ErrorChain(&error), "client certificate names nobody");
                None
            }
        };
        Some(ConnectionIdentity {
            certificate,
            identity,
        })
    }
}

/// Who is calling: the transport's [`PeerInfo`] (if any) and its certificate's identity.
#[derive(Debug, Clone, Default)]
pub(super) struct Caller {
    /// The peer as the transport described it.
    pub(super) peer: Option<PeerInfo>,
    identity: Option<Arc<CertIdentity>>,
}

impl Caller {
    /// The caller of a request, from its extensions.
    pub(super) fn of(extensions: &axum::http::Extensions) -> Caller {
        let peer = extensions.get::<PeerInfo>().cloned();
        let certificate = peer.as_ref().and_then(|peer| peer.certificate.as_ref());
        let identity = match (certificate, extensions.get::<ConnectionIdentity>()) {
            (None, _) => None,
            (Some(certificate), Some(parsed)) if Arc::ptr_eq(certificate, &parsed.certificate) => {
                parsed.identity.clone()
            }
            (Some(certificate), _) => CertIdentity::parse_client(certificate.as_ref())
                .ok()
                .map(Arc::new),
        };
        Caller { peer, identity }
    }

    /// The identity in the peer's certificate, if it presented one.
    fn identity(&self) -> Option<&CertIdentity> {
        self.identity.as_deref()
    }
}

/// A short description of the caller for the request log (never a secret): `anonymous`,
/// `frontend`, `user:3`, `manager:3/7`, `cert:?` for an unreadable certificate.
pub(super) struct Described<'a>(pub(super) &'a Caller);

impl std::fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let caller = self.0;
        match caller.identity() {
            None if caller
                .peer
                .as_ref()
                .is_some_and(|p| p.certificate.is_some()) =>
            {
                f.write_str("cert:?")
            }
            None => f.write_str("anonymous"),
            Some(id) => match (
                id.role.as_deref(),
                id.uid.as_deref(),
                id.service_locator.as_deref(),
            ) {
                (Some("frontend"), _, _) => f.write_str("frontend"),
                (Some(role @ ("manager" | "agent")), Some(uid), Some(sid)) => {
                    write!(f, "{role}:{uid}/{sid}")
                }
                (Some(role), Some(uid), _) => write!(f, "{role}:{uid}"),
                (role, _, _) => write!(f, "cert:{}", role.unwrap_or("?")),
            },
        }
    }
}

/// The user rule: a certificate with an integer `UID` of an existing user and `role=user`.
/// Answers as 1.2 did: 401 without a usable UID, 200 `false` for an unknown user; a wrong role
/// (a manager's or agent's certificate driving its owner's account) and a user the operator
/// disabled are answered like an unknown user.
pub(super) async fn user(director: &Director, caller: &Caller) -> Result<User, Response> {
    let uid = user_id(caller)?;
    match director.user(uid).await {
        Ok(Some(user)) if !user.is_disabled() => Ok(user),
        Ok(Some(_) | None) => Err(answer::no(Cors::Yes)),
        Err(error) => Err(super::error::internal(&error)),
    }
}

/// The part of the user rule the certificate decides: its user id, for a caller that then
/// reads with `Director::read_for_user`, checking that the user exists in the same read.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer, which the handler returns at once"
)]
pub(super) fn user_id(caller: &Caller) -> Result<UserId, Response> {
    let Some(identity) = caller.identity() else {
        return Err(answer::unauthorized(NO_UID));
    };
    let Some(uid) = identity.user_id() else {
        return Err(answer::unauthorized(NO_UID));
    };
    if !identity.has_role(Role::User) {
        return Err(answer::no(Cors::Yes));
    }
    Ok(uid)
}

/// The manager rule: `UID` and `serviceLocator` integers, `role=manager`, the service live
/// and owned by that user.
pub(super) async fn manager(
    director: &Director,
    caller: &Caller,
) -> Result<(UserId, ServiceId), Response> {
    let (uid, sid) = manager_id(caller)?;
    match director.service_belongs_to(uid, sid).await {
        Ok(true) => Ok((uid, sid)),
        Ok(false) => Err(answer::no(Cors::Yes)),
        Err(error) => Err(super::error::internal(&error)),
    }
}

/// The part of the manager rule the certificate decides: its user and service, for the
/// credit callback, which checks the service itself (`Director::charging_manager`).
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer, which the handler returns at once"
)]
pub(super) fn manager_id(caller: &Caller) -> Result<(UserId, ServiceId), Response> {
    let Some(identity) = caller.identity() else {
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
    Ok((uid, sid))
}

/// Whether the caller holds the director's own certificate (the PHP frontend does).
pub(super) fn is_frontend(caller: &Caller) -> bool {
    caller
        .identity()
        .is_some_and(|id| id.has_role(Role::Frontend))
}

/// The caller of a request (never refused: routes decide what an anonymous caller gets).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller::of(&parts.extensions))
    }
}

/// A caller passing the user rule ([`user`]): the handler gets the user; any other caller
/// gets 1.2's answer (401 text, or `false`) before the body is read.
pub(super) struct CertifiedUser(pub(super) User);

impl FromRequestParts<Director> for CertifiedUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        director: &Director,
    ) -> Result<Self, Self::Rejection> {
        user(director, &Caller::of(&parts.extensions))
            .await
            .map(CertifiedUser)
    }
}

/// The certificate's part of the user rule ([`user_id`]), for the listings, which check that
/// the user exists in the same read transaction as they list
/// (`Director::read_for_user`).
pub(super) struct CertifiedUserId(pub(super) UserId);

impl<S: Send + Sync> FromRequestParts<S> for CertifiedUserId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        user_id(&Caller::of(&parts.extensions)).map(CertifiedUserId)
    }
}

/// A caller passing the manager rule ([`manager`]): its user and service.
pub(super) struct CertifiedManager {
    pub(super) uid: UserId,
    pub(super) sid: ServiceId,
}

/// The certificate's part of the manager rule ([`manager_id`]), for the credit callback.
pub(super) struct CertifiedManagerId {
    pub(super) uid: UserId,
    pub(super) sid: ServiceId,
}

impl<S: Send + Sync> FromRequestParts<S> for CertifiedManagerId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (uid, sid) = manager_id(&Caller::of(&parts.extensions))?;
        Ok(CertifiedManagerId { uid, sid })
    }
}

impl FromRequestParts<Director> for CertifiedManager {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        director: &Director,
    ) -> Result<Self, Self::Rejection> {
        let (uid, sid) = manager(director, &Caller::of(&parts.extensions)).await?;
        Ok(CertifiedManager { uid, sid })
    }
}
