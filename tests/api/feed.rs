//! The committed-event feed: subscribers see events only once committed, never skip a
//! writer that commits late, resume from a position, and see only their tenant's events.

use std::collections::HashSet;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantry::{
    db::Db,
    events::feed::{self, FeedEvent, Position, Subscriber},
    tenancy::TenantId,
};
use uuid::Uuid;

use crate::helpers::spawn_app;

/// Appends one event as the request role in an open transaction of `tenant`, which the
/// caller commits when the test wants.
async fn begin_append(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream: Uuid,
) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, data, metadata)
         values ($1, 'test', $2, 1, $3, 'test.happened', $4, '{}')",
    )
    .bind(tenant)
    .bind(stream)
    .bind(Uuid::now_v7())
    .bind(json!({"stream": stream}))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

/// Polls until `count` events arrived after `from` (or 10 s pass). The feed waits for the
/// oldest open transaction in the whole cluster — other tests' included — so delivery can
/// lag a moment; it must never skip or reorder.
async fn poll_for(db: &Db, subscriber: Subscriber, from: Position, count: usize) -> Vec<FeedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut position = from;
    while seen.len() < count && std::time::Instant::now() < deadline {
        let page = feed::poll(db, subscriber, position, 500).await.unwrap();
        match page.last() {
            Some(last) => position = last.position(),
            None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
        seen.extend(page);
    }
    seen
}

fn streams(events: &[FeedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.stream_id).collect()
}

#[tokio::test]
async fn a_writer_that_commits_late_is_delivered_not_skipped() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let db = Db::connect(&app.config).unwrap();
    let (early, late) = (Uuid::now_v7(), Uuid::now_v7());
    let (mut slow_conn, mut fast_conn) = (
        app.request_role_connection().await,
        app.request_role_connection().await,
    );

    // The slow writer starts first (lower transaction id) but commits last.
    let slow = begin_append(&mut slow_conn, tenant.id, early).await;
    let fast = begin_append(&mut fast_conn, tenant.id, late).await;
    fast.commit().await.unwrap();

    let while_slow_is_open =
        feed::poll(&db, Subscriber::Tenant(tenant.id), Position::default(), 100)
            .await
            .unwrap();
    assert!(
        while_slow_is_open.is_empty(),
        "nothing may be delivered past an open transaction that could still commit below it: {:?}",
        streams(&while_slow_is_open)
    );

    slow.commit().await.unwrap();
    let delivered = poll_for(&db, Subscriber::Tenant(tenant.id), Position::default(), 2).await;
    assert_eq!(
        streams(&delivered),
        vec![early, late],
        "both events, in transaction order"
    );

    // Resuming from the last position delivers nothing twice, and then only what is new.
    let resume_at = delivered.last().unwrap().position();
    assert!(
        feed::poll(&db, Subscriber::Tenant(tenant.id), resume_at, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let next = Uuid::now_v7();
    begin_append(&mut fast_conn, tenant.id, next)
        .await
        .commit()
        .await
        .unwrap();
    let after_resume = poll_for(&db, Subscriber::Tenant(tenant.id), resume_at, 1).await;
    assert_eq!(streams(&after_resume), vec![next]);
}

#[tokio::test]
async fn tenant_subscribers_see_only_their_tenant_and_the_platform_sees_all() {
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant().await, app.create_tenant().await);
    let db = Db::connect(&app.config).unwrap();
    let mut conn = app.request_role_connection().await;
    let (stream_a, stream_b) = (Uuid::now_v7(), Uuid::now_v7());
    begin_append(&mut conn, a.id, stream_a)
        .await
        .commit()
        .await
        .unwrap();
    begin_append(&mut conn, b.id, stream_b)
        .await
        .commit()
        .await
        .unwrap();

    let seen_by_a = poll_for(&db, Subscriber::Tenant(a.id), Position::default(), 1).await;
    let seen_by_b = poll_for(&db, Subscriber::Tenant(b.id), Position::default(), 1).await;
    assert_eq!(
        streams(&seen_by_a),
        vec![stream_a],
        "tenant A sees its event only"
    );
    assert_eq!(
        streams(&seen_by_b),
        vec![stream_b],
        "tenant B sees its event only"
    );

    // The platform scope starts just before A's event and must see both tenants'.
    let from = Position {
        seq: seen_by_a[0].seq - 1,
        ..seen_by_a[0].position()
    };
    let mut platform = Vec::new();
    let mut position = from;
    while !platform.contains(&stream_b) {
        let page = feed::poll(&db, Subscriber::Platform, position, 500)
            .await
            .unwrap();
        assert!(
            !page.is_empty(),
            "the platform feed ended before tenant B's event"
        );
        position = page.last().unwrap().position();
        platform.extend(streams(&page));
    }
    assert!(
        platform.contains(&stream_a) && platform.contains(&stream_b),
        "the platform sees every tenant"
    );
}

#[tokio::test]
async fn the_request_role_can_append_events_but_never_rewrite_them() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut conn = app.request_role_connection().await;
    begin_append(&mut conn, tenant.id, Uuid::now_v7())
        .await
        .commit()
        .await
        .unwrap();

    for statement in [
        "update domain_events set data = '{}'",
        "delete from domain_events",
    ] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(tenant.id.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let error = sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect_err(statement);
        assert_eq!(
            error.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "{statement}: permission denied expected"
        );
        tx.rollback().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_sees_every_event_once_while_writers_commit_out_of_order() {
    const WRITERS: usize = 6;
    const EACH: usize = 20;
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let db = Db::connect(&app.config).unwrap();

    // Writers: each append opens a transaction (taking its id), then commits after a
    // random pause, so transactions commit in a different order than they began.
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut conn = app.request_role_connection().await;
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(writer as u64);
            let mut written = Vec::new();
            for _ in 0..EACH {
                let stream = Uuid::now_v7();
                let tx = begin_append(&mut conn, tenant.id, stream).await;
                let pause = rng.random_range(0..15);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                tx.commit().await.unwrap();
                written.push(stream);
            }
            written
        }));
    }

    // The subscriber: small pages, resuming each poll from the last position it kept (as
    // it would after a restart), until it has everything or 30 s pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut position = Position::default();
    let mut delivered: Vec<FeedEvent> = Vec::new();
    while delivered.len() < WRITERS * EACH && std::time::Instant::now() < deadline {
        let page = feed::poll(&db, Subscriber::Tenant(tenant.id), position, 7)
            .await
            .unwrap();
        match page.last() {
            Some(last) => position = last.position(),
            None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
        delivered.extend(page);
    }
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }

    let streams = streams(&delivered);
    let unique: HashSet<Uuid> = streams.iter().copied().collect();
    assert_eq!(unique.len(), streams.len(), "no event is delivered twice");
    assert_eq!(unique, written, "every committed event is delivered");
    assert!(
        delivered
            .windows(2)
            .all(|pair| pair[0].position() < pair[1].position()),
        "positions only move forward"
    );
    assert!(
        feed::poll(&db, Subscriber::Tenant(tenant.id), position, 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing is left behind the last position"
    );
}
