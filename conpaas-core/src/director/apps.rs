//! Applications: create, list, rename, delete (with their services), manifests.

use super::accounts::check_name;
use super::audit::{AuditOutcome, Event};
use super::{Director, Error, parse_int};
use crate::model::ErrorChain;
use crate::model::{AppId, Application, Service, UserId};
use crate::store;

impl Director {
    /// The user's applications, ascending id.
    pub async fn applications(&self, uid: UserId) -> Result<Vec<Application>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::list_applications(conn, uid))
            .await?)
    }

    /// Creates an application; a name the user already has is refused.
    /// A name with control or format characters, surrounding spaces or more than 256
    /// characters is [`Error::Invalid`]; past `MAX_APPLICATIONS_PER_USER`,
    /// [`Error::LimitReached`].
    pub async fn create_application(&self, uid: UserId, name: &str) -> Result<Application, Error> {
        check_name("name", name, store::names::MAX_NAME_CHARS)?;
        let name = name.to_owned();
        let max = self.inner.user_limits.max_applications;
        let event = Event::new("application.created", AuditOutcome::Ok)
            .uid(uid)
            .detail("name", name.clone());
        self.inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let app = store::create_application_capped(conn, uid, &name, max)?;
                    store::record_audit_event(conn, &event.aid(app.aid).to_new())?;
                    Ok(app)
                })
            })
            .await
            .map_err(|error| match error {
                store::Error::ApplicationNameTaken { name, .. } => {
                    Error::ApplicationNameTaken(name)
                }
                other => other.into(),
            })
    }

    /// Renames the user's application; `false` when it is not theirs. The name is checked as
    /// [`Director::create_application`] checks it.
    pub async fn rename_application(
        &self,
        uid: UserId,
        aid: AppId,
        name: &str,
    ) -> Result<bool, Error> {
        check_name("name", name, store::names::MAX_NAME_CHARS)?;
        let name = name.to_owned();
        let event = Event::new("application.renamed", AuditOutcome::Ok)
            .uid(uid)
            .aid(aid)
            .detail("name", name.clone())
            .to_new();
        Ok(self
            .inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let renamed = store::rename_application_owned(conn, aid, uid, &name)?;
                    if renamed {
                        store::record_audit_event(conn, &event)?;
                    }
                    Ok::<_, store::Error>(renamed)
                })
            })
            .await?)
    }

    /// Deletes the user's application after stopping each of its services (managers asked to
    /// shut down first, best effort; VMs destroyed; rows deleted). `false` when not theirs.
    /// A VM that cannot be destroyed keeps its row (so nothing is forgotten) and fails the call.
    pub async fn delete_application(&self, uid: UserId, aid: AppId) -> Result<bool, Error> {
        let store = &self.inner.store;
        let owned = store
            .run(move |conn| store::find_application_owned(conn, aid, uid))
            .await?;
        if owned.is_none() {
            return Ok(false);
        }
        // A start into the application may insert its row while this runs (1.2 did not
        // prevent it either): each round stops what it finds, and the application goes only
        // when it holds nothing. A start that comes after the application is gone is refused.
        let mut rounds_left = 5;
        loop {
            let services = store
                .read(move |conn| store::list_services_for_application_owned(conn, aid, uid))
                .await?;
            let mut first_error = None;
            for service in services {
                self.shutdown_manager(&service).await;
                if let Err(error) = self.destroy_service(&service, "service.stopped").await {
                    tracing::warn!(sid = %service.sid, error = %ErrorChain(&error), "cannot stop a service of a deleted application");
                    first_error.get_or_insert(error);
                }
            }
            if let Some(error) = first_error {
                return Err(error);
            }
            let event = Event::new("application.deleted", AuditOutcome::Ok)
                .uid(uid)
                .aid(aid)
                .to_new();
            let deleted = store
                .run(move |conn| {
                    store::write_transaction(conn, |conn| {
                        let deleted = store::delete_application_owned(conn, aid, uid)?;
                        if deleted {
                            store::record_audit_event(conn, &event)?;
                        }
                        Ok::<_, store::Error>(deleted)
                    })
                })
                .await;
            match deleted {
                Err(store::Error::ApplicationNotEmpty { .. }) if rounds_left > 0 => {
                    rounds_left -= 1;
                }
                other => return Ok(other?),
            }
        }
    }

    /// The services of the user's application (`[]` when it is not theirs: 1.2 showed anyone's).
    pub async fn application_services(
        &self,
        uid: UserId,
        aid: AppId,
    ) -> Result<Vec<Service>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::list_services_for_application_owned(conn, aid, uid))
            .await?)
    }

    /// The application and its services for a manifest export; `None` when not the user's.
    /// `aid` is the raw path text (1.2 accepted any text there).
    pub async fn manifest(
        &self,
        uid: UserId,
        aid: &str,
    ) -> Result<Option<(Application, Vec<Service>)>, Error> {
        let Some(aid) = parse_int(aid)
            .and_then(|aid| i32::try_from(aid).ok())
            .map(AppId)
        else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let Some(app) = store
            .run(move |conn| store::find_application_owned(conn, aid, uid))
            .await?
        else {
            return Ok(None);
        };
        let services = self.application_services(uid, aid).await?;
        Ok(Some((app, services)))
    }
}
