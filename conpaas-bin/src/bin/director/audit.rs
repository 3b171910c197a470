//! `director audit`: the audit log read back, as text lines or JSON lines.

use std::io::Write as _;
use std::process::ExitCode;

use chrono::{NaiveDate, NaiveDateTime, Utc};
use conpaas_core::config::LoadedConfig;
use conpaas_core::model::UserId;
use conpaas_core::store::{self, AuditEvent, AuditQuery, Store};

/// `--since`: an RFC 3339 time (`2026-12-06T21:00:00Z`), a UTC date (`2026-12-06`), or a time
/// ago (`90s`, `30m`, `12h`, `7d`).
pub(super) fn since(text: &str) -> Result<NaiveDateTime, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.naive_utc());
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN));
    }
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| expected(text))?;
    let (n, unit) = text.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| expected(text))?;
    let ago = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(|| expected(text))?;
    Utc::now()
        .naive_utc()
        .checked_sub_signed(ago)
        .ok_or_else(|| expected(text))
}

fn expected(text: &str) -> String {
    format!(
        "{text:?}: expected an RFC 3339 time (2026-12-06T21:00:00Z), a date (2026-12-06) or a \
         time ago (90s, 30m, 12h, 7d)"
    )
}

/// What `director audit` was asked.
pub(super) struct Asked {
    pub(super) since: Option<NaiveDateTime>,
    pub(super) user: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) json: bool,
}

pub(super) fn run(loaded: &LoadedConfig, asked: Asked) -> anyhow::Result<ExitCode> {
    // Reading never migrates (a director of this version that has served the database has)
    // nor writes: the database is opened read-only.
    let store = Store::open_read_only(&loaded.config.store)?;
    let pending = store.run_blocking(store::pending_migrations)?;
    if pending.iter().any(|name| name.contains("audit_event")) {
        eprintln!(
            "E: the database of {} has no audit log yet: start this version's director once \
             (`director serve`), which migrates it",
            loaded.path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut query = AuditQuery::all();
    if let Some(since) = asked.since {
        query = query.since(since);
    }
    if let Some(limit) = asked.limit {
        query = query.limit(limit);
    }
    if let Some(user) = &asked.user {
        let (uid, name) = resolve_user(&store, user)?;
        query = query.user(uid, name);
    }
    let events = store.run_blocking(move |conn| store::list_audit_events(conn, &query))?;
    let mut out = std::io::stdout().lock();
    for event in &events {
        let line = if asked.json {
            json_line(event).to_string()
        } else {
            text_line(event)
        };
        // A closed pipe (`| head`) ends the listing quietly.
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--user`: a user name or id, as the user is known now; a name that is no account's
/// still finds its refused logins.
fn resolve_user(store: &Store, user: &str) -> anyhow::Result<(Option<UserId>, String)> {
    let text = user.to_owned();
    let by_id = text.parse::<i32>().ok().map(UserId);
    let found = store.run_blocking(move |conn| match by_id {
        Some(uid) => store::find_user(conn, uid),
        None => store::find_user_by_username(conn, &text),
    })?;
    Ok(match found {
        Some(found) => (Some(found.uid), found.username),
        None => (by_id, user.to_owned()),
    })
}

/// A client's text as is when it is one plain word, else quoted and escaped.
fn quoted(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() && c != '"') {
        text.to_owned()
    } else {
        format!("{text:?}")
    }
}

fn time(at: &NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One event as a JSON object (its `detail` an object, not a text).
fn json_line(event: &AuditEvent) -> serde_json::Value {
    let detail: serde_json::Value =
        serde_json::from_str(&event.detail).unwrap_or_else(|_| event.detail.clone().into());
    serde_json::json!({
        "id": event.id,
        "at": time(&event.at),
        "event": event.event,
        "outcome": event.outcome,
        "principal": event.principal,
        "source": event.source,
        "request_id": event.request_id,
        "client_request_id": event.client_request_id,
        "uid": event.uid.map(|uid| uid.0),
        "username": event.username,
        "aid": event.aid.map(|aid| aid.0),
        "sid": event.sid.map(|sid| sid.0),
        "detail": detail,
    })
}

/// One event as a line: time, event, outcome, principal, source, request id, then what it
/// concerns and its details.
fn text_line(event: &AuditEvent) -> String {
    let mut line = format!(
        "{} {} {} {} from={} request={}",
        time(&event.at),
        event.event,
        event.outcome,
        event.principal,
        event.source.as_deref().unwrap_or("-"),
        event.request_id.as_deref().map_or("-".into(), quoted),
    );
    if let Some(id) = &event.client_request_id {
        // Sent by the client: quoted, as a typed name is.
        line.push_str(&format!(" client_request={}", quoted(id)));
    }
    if let Some(uid) = event.uid {
        line.push_str(&format!(" uid={uid}"));
    }
    if let Some(name) = &event.username {
        // Typed by a client at a login: quoted, so that nothing in it passes for a field.
        line.push_str(&format!(" username={}", quoted(name)));
    }
    if let Some(aid) = event.aid {
        line.push_str(&format!(" aid={aid}"));
    }
    if let Some(sid) = event.sid {
        line.push_str(&format!(" sid={sid}"));
    }
    if event.detail != "{}" {
        line.push(' ');
        line.push_str(&event.detail);
    }
    line
}
