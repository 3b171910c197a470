//! The `audit_event` table: the append-only audit log (docs/operations.md, "Audit log").
//! The database refuses UPDATE and DELETE on it (migration 3's triggers).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Error;
use super::conn::{DbConnection, on_backend, write_transaction};
use super::schema::audit_event;
use crate::model::{AppId, ServiceId, UserId};

/// The longest text kept in a column written from what a client sent (a user name typed at a
/// login, a request id): longer ones are cut, so that an event stays small.
pub const MAX_AUDIT_TEXT: usize = 128;

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewAuditEvent {
    /// When it happened, UTC.
    pub at: NaiveDateTime,
    /// What happened (`login`, `certificate.issued`...).
    pub event: String,
    /// `ok`, `refused`, `throttled`, `failed` or `deferred`.
    pub outcome: String,
    /// Who acted (`user:3`, `manager:3/7`, `frontend`, `operator`, `director`, `anonymous`).
    pub principal: String,
    /// The client's address.
    pub source: Option<String>,
    /// The director's id of the request (its answer's `x-request-id`).
    pub request_id: Option<String>,
    /// The `x-request-id` the client sent, if any.
    pub client_request_id: Option<String>,
    /// The user concerned.
    pub uid: Option<UserId>,
    /// The user name concerned.
    pub username: Option<String>,
    /// The application concerned.
    pub aid: Option<AppId>,
    /// The service concerned.
    pub sid: Option<ServiceId>,
    /// The rest, as a JSON object's text (`{}` for nothing). Never a secret.
    pub detail: String,
}

impl NewAuditEvent {
    /// The event `event` that ended `outcome`, done by `principal` at `at` (UTC); no
    /// request, no subject, detail `{}` (set them with the setters).
    pub fn new(
        at: NaiveDateTime,
        event: impl Into<String>,
        outcome: impl Into<String>,
        principal: impl Into<String>,
    ) -> Self {
        NewAuditEvent {
            at,
            event: event.into(),
            outcome: outcome.into(),
            principal: principal.into(),
            source: None,
            request_id: None,
            client_request_id: None,
            uid: None,
            username: None,
            aid: None,
            sid: None,
            detail: "{}".to_owned(),
        }
    }

    setters! {
        source: some into String,
        request_id: some into String,
        client_request_id: some into String,
        uid: some UserId,
        username: some into String,
        aid: some AppId,
        sid: some ServiceId,
        detail: into String,
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_event)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Its place in the log (increasing).
    pub id: i64,
    /// When it happened, UTC.
    pub at: NaiveDateTime,
    /// What happened.
    pub event: String,
    /// How it ended.
    pub outcome: String,
    /// Who acted.
    pub principal: String,
    /// The client's address.
    pub source: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// The user concerned.
    pub uid: Option<UserId>,
    /// The user name concerned.
    pub username: Option<String>,
    /// The application concerned.
    pub aid: Option<AppId>,
    /// The service concerned.
    pub sid: Option<ServiceId>,
    /// The rest, a JSON object's text.
    pub detail: String,
    /// The `x-request-id` the client sent, if any.
    pub client_request_id: Option<String>,
}

/// Which events [`list_audit_events`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only events at or after this time (UTC).
    pub since: Option<NaiveDateTime>,
    /// Only events concerning this user: their id, or the user name typed (refused logins of
    /// a name that is no account's have no id).
    pub user: Option<(Option<UserId>, String)>,
    /// At most this many, the latest (in the order they happened).
    pub limit: Option<i64>,
}

impl AuditQuery {
    /// Every event.
    pub fn all() -> AuditQuery {
        AuditQuery::default()
    }

    /// Only events at or after `since` (UTC).
    pub fn since(mut self, since: NaiveDateTime) -> AuditQuery {
        self.since = Some(since);
        self
    }

    /// Only events of the user with this id or, for events without one, this name.
    pub fn user(mut self, uid: Option<UserId>, username: impl Into<String>) -> AuditQuery {
        self.user = Some((uid, username.into()));
        self
    }

    /// At most the latest `n`.
    pub fn limit(mut self, n: i64) -> AuditQuery {
        self.limit = Some(n);
        self
    }
}

/// `text` cut to [`MAX_AUDIT_TEXT`] bytes at a character boundary.
pub(crate) fn bounded(text: &str) -> String {
    bounded_text(text, MAX_AUDIT_TEXT)
}

/// `text` cut to `max` bytes at a character boundary.
pub(crate) fn bounded_text(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[derive(Insertable)]
#[diesel(table_name = audit_event)]
struct AuditRow<'a> {
    at: NaiveDateTime,
    event: &'a str,
    outcome: &'a str,
    principal: &'a str,
    source: Option<&'a str>,
    request_id: Option<String>,
    uid: Option<UserId>,
    username: Option<String>,
    aid: Option<AppId>,
    sid: Option<ServiceId>,
    detail: &'a str,
    client_request_id: Option<String>,
}

impl AuditRow<'_> {
    /// The row as read back, with the id the database gave it.
    fn recorded(&self, id: i64) -> AuditEvent {
        AuditEvent {
            id,
            at: self.at,
            event: self.event.to_owned(),
            outcome: self.outcome.to_owned(),
            principal: self.principal.to_owned(),
            source: self.source.map(str::to_owned),
            request_id: self.request_id.clone(),
            uid: self.uid,
            username: self.username.clone(),
            aid: self.aid,
            sid: self.sid,
            detail: self.detail.to_owned(),
            client_request_id: self.client_request_id.clone(),
        }
    }
}

impl<'a> From<&'a NewAuditEvent> for AuditRow<'a> {
    fn from(new: &'a NewAuditEvent) -> AuditRow<'a> {
        AuditRow {
            at: new.at,
            event: &new.event,
            outcome: &new.outcome,
            principal: &new.principal,
            source: new.source.as_deref(),
            request_id: new.request_id.as_deref().map(bounded),
            uid: new.uid,
            username: new.username.as_deref().map(bounded),
            aid: new.aid,
            sid: new.sid,
            detail: &new.detail,
            client_request_id: new.client_request_id.as_deref().map(bounded),
        }
    }
}

/// Appends `events`, in one transaction (in the caller's, when it has one open: an event of a
/// change is committed with the change or not at all).
pub fn record_audit_events(conn: &mut DbConnection, events: &[NewAuditEvent]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<AuditRow<'_>> = events.iter().map(AuditRow::from).collect();
    // Ids are asked for only when a subscriber will get the events (super::audit_stream).
    let listening = super::audit_stream::listening();
    write_transaction(conn, |conn| {
        // Under both databases' limits on bound parameters (12 per row).
        for chunk in rows.chunks(500) {
            if listening {
                let ids: Vec<i64> = on_backend!(conn, |c| diesel::insert_into(audit_event::table)
                    .values(chunk)
                    .returning(audit_event::id)
                    .get_results(c))?;
                super::audit_stream::recorded(
                    ids.into_iter().zip(chunk).map(|(id, row)| row.recorded(id)),
                );
            } else {
                on_backend!(conn, |c| diesel::insert_into(audit_event::table)
                    .values(chunk)
                    .execute(c))?;
            }
        }
        Ok(())
    })
}

/// Appends one event ([`record_audit_events`]).
pub fn record_audit_event(conn: &mut DbConnection, event: &NewAuditEvent) -> Result<(), Error> {
    record_audit_events(conn, std::slice::from_ref(event))
}

/// The events `query` selects, oldest first.
pub fn list_audit_events(
    conn: &mut DbConnection,
    query: &AuditQuery,
) -> Result<Vec<AuditEvent>, Error> {
    let mut select = audit_event::table
        .select(AuditEvent::as_select())
        .into_boxed();
    if let Some(since) = query.since {
        select = select.filter(audit_event::at.ge(since));
    }
    if let Some((uid, name)) = &query.user {
        let by_name = audit_event::uid
            .is_null()
            .and(audit_event::username.eq(name.clone()));
        select = match uid {
            Some(uid) => select.filter(audit_event::uid.eq(*uid).or(by_name)),
            None => select.filter(by_name),
        };
    }
    // The latest `limit`, read newest first and put back in order.
    let mut events: Vec<AuditEvent> = match query.limit {
        Some(limit) => {
            let mut latest: Vec<AuditEvent> = select
                .order(audit_event::id.desc())
                .limit(limit.max(0))
                .load(conn)?;
            latest.reverse();
            latest
        }
        None => select.order(audit_event::id.asc()).load(conn)?,
    };
    events.shrink_to_fit();
    Ok(events)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::*;
    use crate::store::test_support::sqlite_store;

    fn event(name: &str, uid: Option<i32>, username: Option<&str>) -> NewAuditEvent {
        NewAuditEvent {
            at: chrono::Utc::now().naive_utc(),
            event: name.into(),
            outcome: "ok".into(),
            principal: "operator".into(),
            source: Some("192.0.2.1".into()),
            request_id: Some("r".repeat(300)),
            client_request_id: Some("c".repeat(300)),
            uid: uid.map(UserId),
            username: username.map(str::to_owned),
            aid: None,
            sid: None,
            detail: "{}".into(),
        }
    }

    #[test]
    fn events_are_appended_read_back_and_never_changed() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| -> Result<(), Error> {
                record_audit_events(
                    conn,
                    &[
                        event("user.created", Some(1), Some("alice")),
                        event("login", None, Some("alice")),
                        event("login", None, Some("mallory")),
                        event("login", Some(2), Some("bob")),
                    ],
                )?;
                let all = list_audit_events(conn, &AuditQuery::all())?;
                assert_eq!(all.len(), 4);
                assert!(all.windows(2).all(|w| w[0].id < w[1].id));
                // A client's text is bounded.
                assert_eq!(
                    all[0].request_id.as_deref().map(str::len),
                    Some(MAX_AUDIT_TEXT)
                );
                let alice =
                    list_audit_events(conn, &AuditQuery::all().user(Some(UserId(1)), "alice"))?;
                assert_eq!(
                    alice.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
                    ["user.created", "login"]
                );
                let latest = list_audit_events(conn, &AuditQuery::all().limit(2))?;
                assert_eq!(
                    latest.iter().map(|e| e.id).collect::<Vec<_>>(),
                    [all[2].id, all[3].id]
                );
                let future = chrono::Utc::now().naive_utc() + chrono::Duration::hours(1);
                assert!(list_audit_events(conn, &AuditQuery::all().since(future))?.is_empty());

                // The database itself refuses to change or remove an event.
                for statement in [
                    "UPDATE audit_event SET outcome = 'refused'",
                    "DELETE FROM audit_event",
                ] {
                    let refused = match conn {
                        DbConnection::Sqlite(c) => c.batch_execute(statement),
                        #[cfg(feature = "postgres")]
                        DbConnection::Pg(_) => unreachable!(),
                    };
                    let message = refused.unwrap_err().to_string();
                    assert!(message.contains("append-only"), "{statement}: {message}");
                }
                assert_eq!(list_audit_events(conn, &AuditQuery::all())?, all);
                Ok(())
            })
            .unwrap();
    }
}
