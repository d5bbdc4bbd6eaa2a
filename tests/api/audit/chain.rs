//! The hash chain: sealing follows the committed order, verification pinpoints tampering,
//! erasure does not break it, and the log refuses to be rewritten.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{verified_when_sealed, verify_now};
use crate::helpers::{TestApp, TestTenant, id, run_tenantry, spawn_app};

/// `(link, event_id)` of the tenant's sealed events, in link order (as the superuser).
async fn links(app: &TestApp, tenant: &TestTenant) -> Vec<(i64, Uuid)> {
    let mut db = app.owner_connection().await;
    sqlx::query_as("select link, event_id from audit_chain where tenant_id = $1 order by link")
        .bind(tenant.id.as_uuid())
        .fetch_all(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_writers_are_all_sealed_into_one_unbroken_chain() {
    // Arrange: 40 audited changes, all sent at once.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let writes = (0..40).map(|_| app.create_product(&tenant));
    futures::future::join_all(writes).await;

    // Act
    let verification = verified_when_sealed(&app, &tenant).await;

    // Assert: every event sealed once, links 1..n without a gap, and the chain holds.
    let mut db = app.owner_connection().await;
    let events: i64 = sqlx::query_scalar("select count(*) from audit_events where tenant_id = $1")
        .bind(tenant.id.as_uuid())
        .fetch_one(&mut db)
        .await
        .unwrap();
    let links = links(&app, &tenant).await;
    assert_eq!(verification["verified"], true, "{verification}");
    assert_eq!(verification["sealed"], events, "{verification}");
    assert_eq!(
        links.iter().map(|(link, _)| *link).collect::<Vec<_>>(),
        (1..=events).collect::<Vec<_>>(),
        "links are 1..n"
    );
    assert_eq!(verification["head"]["link"], events);
}

#[tokio::test]
async fn verify_pinpoints_an_event_a_superuser_edited_and_the_cli_agrees() {
    // Arrange: a sealed log of a few events.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    for _ in 0..3 {
        app.create_product(&tenant).await;
    }
    let before = verified_when_sealed(&app, &tenant).await;
    assert_eq!(before["verified"], true, "{before}");
    let links = links(&app, &tenant).await;
    let (tampered_link, tampered_event) = links[links.len() / 2];

    // Act: a superuser rewrites one event, past the append-only trigger.
    let mut db = app.owner_connection().await;
    sqlx::query("set session_replication_role = replica")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("update audit_events set data = '{\"sku\": \"FORGED\"}' where id = $1")
        .bind(tampered_event)
        .execute(&mut db)
        .await
        .unwrap();

    // Assert: the API names the link and the event.
    let after = verify_now(&app, &tenant).await;
    assert_eq!(after["verified"], false, "{after}");
    assert_eq!(
        after["broken"],
        json!({"link": tampered_link, "event_id": tampered_event, "reason": "event_altered"}),
        "{after}"
    );
    assert_eq!(
        after["sealed"],
        tampered_link - 1,
        "the links before it hold: {after}"
    );

    // …and so does the command line, which exits 65.
    let output = run_tenantry(
        &app.config,
        &[],
        &["audit", "verify", "--tenant", &tenant.slug],
    )
    .await;
    assert_eq!(output.code, Some(65), "stderr: {}", output.stderr);
    assert!(
        output
            .stdout
            .contains(&format!("broken at link {tampered_link}"))
            && output.stdout.contains("event_altered"),
        "stdout: {}",
        output.stdout
    );
}

#[tokio::test]
async fn a_deleted_event_and_a_rewritten_link_are_found_too() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    for _ in 0..2 {
        app.create_product(&tenant).await;
    }
    verified_when_sealed(&app, &tenant).await;
    let links = links(&app, &tenant).await;
    let mut db = app.owner_connection().await;
    sqlx::query("set session_replication_role = replica")
        .execute(&mut db)
        .await
        .unwrap();

    // A rewritten chain hash of the last link.
    let (last, _) = *links.last().unwrap();
    sqlx::query(
        "update audit_chain set chain_hash = sha256('x') where tenant_id = $1 and link = $2",
    )
    .bind(tenant.id.as_uuid())
    .bind(last)
    .execute(&mut db)
    .await
    .unwrap();
    let verification = verify_now(&app, &tenant).await;
    assert_eq!(
        verification["broken"]["reason"], "chain_altered",
        "{verification}"
    );
    assert_eq!(verification["broken"]["link"], last);

    // A deleted event (earlier than the rewritten link: the first break is reported).
    let (first, first_event) = links[0];
    sqlx::query("delete from audit_events where id = $1")
        .bind(first_event)
        .execute(&mut db)
        .await
        .unwrap();
    let verification = verify_now(&app, &tenant).await;
    assert_eq!(
        verification["broken"],
        json!({"link": first, "event_id": first_event, "reason": "event_missing"}),
        "{verification}"
    );
}

#[tokio::test]
async fn erasing_personal_data_keeps_the_chain_whole_but_changing_it_does_not() {
    // Arrange: a customer (personal data: email, name, the client's address), sealed.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    verified_when_sealed(&app, &tenant).await;
    let mut db = app.owner_connection().await;
    let event: Uuid =
        sqlx::query_scalar("select id from audit_events where tenant_id = $1 and target_id = $2")
            .bind(tenant.id.as_uuid())
            .bind(id(&customer))
            .fetch_one(&mut db)
            .await
            .unwrap();

    // Act: erasure, as the owner says it is erasing (the trigger allows that and only that).
    let mut tx = sqlx::Connection::begin(&mut db).await.unwrap();
    sqlx::query("select set_config('tenantry.audit_maintenance', 'erasure', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("update audit_events set personal = null where id = $1")
        .bind(event)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Assert: erased, and still verified.
    let personal: Option<Value> =
        sqlx::query_scalar("select personal from audit_events where id = $1")
            .bind(event)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(personal, None);
    let verification = verify_now(&app, &tenant).await;
    assert_eq!(verification["verified"], true, "{verification}");

    // But personal data changed rather than erased is tampering (another customer's).
    let other = app.create_customer(&tenant).await;
    verified_when_sealed(&app, &tenant).await;
    sqlx::query("set session_replication_role = replica")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "update audit_events set personal = jsonb_set(personal, '{email}', '\"forged@x.test\"')
         where tenant_id = $1 and target_id = $2",
    )
    .bind(tenant.id.as_uuid())
    .bind(id(&other))
    .execute(&mut db)
    .await
    .unwrap();
    let verification = verify_now(&app, &tenant).await;
    assert_eq!(
        verification["broken"]["reason"], "personal_data_altered",
        "{verification}"
    );
}

#[tokio::test]
async fn the_log_refuses_updates_deletes_and_truncation_even_from_its_owner() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    app.create_product(&tenant).await;
    verified_when_sealed(&app, &tenant).await;
    let mut db = app.owner_connection().await;
    let tenant_id = tenant.id.as_uuid();
    for statement in [
        "update audit_events set actor = 'someone else' where tenant_id = $1",
        "delete from audit_events where tenant_id = $1",
        "update audit_events set personal = null where tenant_id = $1",
        "update audit_chain set event_hash = sha256('x') where tenant_id = $1",
        "delete from audit_chain where tenant_id = $1",
    ] {
        let refused = sqlx::query(statement)
            .bind(tenant_id)
            .execute(&mut db)
            .await;
        let error = refused.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    let truncated = sqlx::query("truncate audit_events").execute(&mut db).await;
    assert!(truncated.is_err(), "truncate is refused");

    // Erasure may clear personal data and nothing else.
    let mut tx = sqlx::Connection::begin(&mut db).await.unwrap();
    sqlx::query("select set_config('tenantry.audit_maintenance', 'erasure', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let smuggled = sqlx::query(
        "update audit_events set personal = null, actor = 'someone else' where tenant_id = $1",
    )
    .bind(tenant_id)
    .execute(&mut *tx)
    .await;
    assert!(smuggled.is_err(), "erasure cannot change other columns");
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.rollback()).await;
}

#[tokio::test]
async fn the_retention_job_prunes_old_events_and_the_chain_still_verifies_but_not_a_deletion_past_it()
 {
    // Arrange: a sealed log, then a cut-off after it, then a newer event.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    for _ in 0..3 {
        app.create_customer(&tenant).await;
    }
    let before = verified_when_sealed(&app, &tenant).await;
    let old = before["sealed"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newer = app.create_customer(&tenant).await;
    verified_when_sealed(&app, &tenant).await;

    // Act: the retention job, then again (nothing more to prune).
    let pruned = run_tenantry(
        &app.config,
        &[],
        &[
            "audit",
            "prune",
            "--tenant",
            &tenant.slug,
            "--before",
            &cutoff,
        ],
    )
    .await;
    assert!(pruned.success, "{}", pruned.stderr);
    assert!(
        pruned
            .stdout
            .contains(&format!("pruned {old} audit events of tenant")),
        "{}",
        pruned.stdout
    );

    // Assert: the old events are gone, the newer one stays, every link still holds.
    let mut db = app.owner_connection().await;
    let left: Vec<String> = sqlx::query_scalar(
        "select target_id from audit_events where tenant_id = $1 and action = 'customer.created'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(left, [id(&newer)]);
    let after = verified_when_sealed(&app, &tenant).await;
    assert_eq!(after["verified"], true, "{after}");
    assert_eq!(after["pruned"], old, "{after}");
    assert_eq!(
        app.audit_actions(tenant.id, &tenant.id.to_string())
            .await
            .last()
            .map(String::as_str),
        Some("audit.pruned")
    );

    // Past the horizon, a deleted event is still caught; and the horizon cannot be moved
    // without the retention job's setting.
    sqlx::query("set session_replication_role = replica")
        .execute(&mut db)
        .await
        .unwrap();
    let event: uuid::Uuid =
        sqlx::query_scalar("select id from audit_events where tenant_id = $1 and target_id = $2")
            .bind(tenant.id.as_uuid())
            .bind(id(&newer))
            .fetch_one(&mut db)
            .await
            .unwrap();
    sqlx::query("delete from audit_events where id = $1")
        .bind(event)
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut db)
        .await
        .unwrap();
    let tampered = verify_now(&app, &tenant).await;
    assert_eq!(tampered["broken"]["reason"], "event_missing", "{tampered}");
    let moved = sqlx::query(
        "update audit_retention set through_link = through_link + 100 where tenant_id = $1",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut db)
    .await;
    assert!(
        moved.is_err(),
        "the horizon moves only under the retention job"
    );
}
