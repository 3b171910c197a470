//! The audit log from an embedder's own code: calls made in an `AuditContext` (the principal,
//! address and request id of the embedder's own request) are recorded with it, an event of
//! the embedder's own is queued beside them, and the log is read back, as a table and as the
//! stream a subscriber saw while it was written. Run with
//! `cargo run -p conpaas-core --example audit_log`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
use conpaas_core::cloud::{CloudRegistry, DummyCloud};
use conpaas_core::director::Director;
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::audit::{AuditContext, AuditOutcome, AuditQuery, Event};
use conpaas_core::model::Credit;
use conpaas_core::store::Store;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let director = Director::builder()
        .store(Store::open_in_memory().unwrap())
        .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap())
        .clouds(
            CloudRegistry::builder()
                .cloud("local", Arc::new(DummyCloud::new("local", dir.path())))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // Every event from now on, as each commits (bounded: a subscriber far behind is told how
    // many it missed).
    let mut stream = director.subscribe_audit();

    // Outside any context: the operator's.
    let user = accounts::add_user(
        director.store(),
        NewAccount::new("alice", "alice@example.org", "s3cret".into(), Credit(5)),
    )
    .await
    .unwrap();

    // Inside the embedder's request: its principal, address and request id.
    let context = AuditContext::request(
        format!("user:{}", user.uid),
        Some("198.51.100.7".parse().unwrap()),
        Some("req-42".into()),
    );
    context
        .scope(async {
            let app = director.create_application(user.uid, "shop").await.unwrap();
            director.audit(
                Event::new("shop.opened", AuditOutcome::Ok)
                    .uid(user.uid)
                    .aid(app.aid)
                    .detail("by", "the embedder"),
            );
        })
        .await;
    director.flush_audit().await.unwrap();

    let events = director.audit_events(AuditQuery::all()).await.unwrap();
    for event in &events {
        println!(
            "{} {} {} {} {:?} {:?} {}",
            event.at,
            event.event,
            event.outcome,
            event.principal,
            event.source,
            event.request_id,
            event.detail
        );
    }
    let names: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(
        names,
        ["user.created", "application.created", "shop.opened"]
    );
    assert_eq!(events[0].principal, "operator");
    assert_eq!(events[1].principal, format!("user:{}", user.uid));
    assert_eq!(events[1].source.as_deref(), Some("198.51.100.7"));
    assert_eq!(events[2].request_id.as_deref(), Some("req-42"));
    // The stream saw the same events, with the table's ids.
    let mut streamed = Vec::new();
    while let Some(event) = stream.try_recv().unwrap() {
        streamed.push(event.as_ref().clone());
    }
    assert_eq!(streamed, events);
    println!("ok: {} events, the same in the stream", events.len());
}
