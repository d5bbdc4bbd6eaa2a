//! Start-up before the database is up, as in a compose stack whose Postgres is still
//! initialising: the real binary waits for it (saying so at each wait), gives up after
//! `DATABASE_CONNECT_TIMEOUT` saying what it waited for, and does not wait at all for a
//! database that refuses its credentials.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    cluster::ThrowawayCluster,
    helpers::{free_port, json_log_lines, run_tenantry, tenantry_command, test_config, unique},
};
use serde_json::Value;

/// The password in `DATABASE_URL` (trust authentication ignores it).
const PASSWORD: &str = "never-logged-0123";
/// How long the database stays down after the server starts.
const LATE_BY: Duration = Duration::from_secs(3);
/// How long the server may take, once the database is up, to bootstrap and be ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// `tenantry serve` on a free port against `database_url`, its stderr (the log) going to
/// `log_file`; killed when dropped. Returns it with its base URL.
fn spawn_serve(database_url: &str, log_file: &Path) -> (tokio::process::Child, String) {
    let address = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(log_file).unwrap();
    let server = tenantry_command(&test_config(&[("DATABASE_URL", database_url)]))
        .arg("serve")
        .env("TENANTRY_LISTEN", &address)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    (server, format!("http://{address}"))
}

#[tokio::test]
async fn serve_waits_for_a_database_that_comes_up_late_and_then_serves() {
    // Arrange: a cluster that exists but is not started, and the server pointed at it
    // (with a password, which trust authentication ignores and the log must not show).
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::initialise)
        .await
        .unwrap();
    let database_url = cluster
        .url("tenantry_startup")
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-startup")));
    let (mut server, address) = spawn_serve(&database_url, &log_file);

    // Act: the database comes up a few seconds later.
    tokio::time::sleep(LATE_BY).await;
    let still_waiting = server.try_wait().unwrap().is_none();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    let up = Instant::now();
    let client = reqwest::Client::new();
    let ready = loop {
        let answer = client.get(format!("{address}/health/ready")).send().await;
        if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
            break true;
        }
        if server.try_wait().unwrap().is_some() || up.elapsed() > READY_WITHIN {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.kill().await.unwrap();
    drop(cluster);

    // Assert
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);
    assert!(
        still_waiting,
        "the server was still waiting for the database after {LATE_BY:?}; its log:\n{log}"
    );
    assert!(
        ready,
        "/health/ready answered 200 within {READY_WITHIN:?} of the database coming up; the \
         server's log:\n{log}"
    );
    let waits: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("database not reachable yet; retrying in "))
        })
        .collect();
    assert!(
        !waits.is_empty()
            && waits.iter().all(|l| {
                l["level"] == "WARN" && l["attempt"].is_u64() && l["error"].is_string()
            }),
        "each wait was logged as a warning with its attempt and error; the log:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the log never shows DATABASE_URL's password:\n{log}"
    );
}

#[tokio::test]
async fn migrate_gives_up_after_database_connect_timeout_and_says_what_it_waited_for() {
    // Arrange: a port where no database server is, nor will be.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let config = test_config(&[]);
    let started = Instant::now();

    // Act
    let output = run_tenantry(
        &config,
        &[
            (
                "DATABASE_URL",
                &format!("postgres://postgres@{nowhere}/tenantry"),
            ),
            ("DATABASE_CONNECT_TIMEOUT", "2s"),
        ],
        &["migrate"],
    )
    .await;
    let took = started.elapsed();

    // Assert
    assert_eq!(
        output.code,
        Some(69),
        "expected exit status 69 (unavailable); stderr:\n{}",
        output.stderr
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "it waited the 2 s it was given, and not much more: {took:?}"
    );
    let error = output.stderr.lines().find(|l| l.starts_with("error: "));
    assert!(
        error.is_some_and(|e| e.starts_with(&format!(
            "error: waited 2s (DATABASE_CONNECT_TIMEOUT) for the database server at {nowhere} to accept a connection"
        )) && e.contains("Connection refused")),
        "the error says how long it waited, for what, and the last failure; stderr:\n{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("database not reachable yet; retrying in 250ms"),
        "the waits were logged; stderr:\n{}",
        output.stderr
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {}",
        output.stdout
    );
}

#[tokio::test]
async fn a_database_that_refuses_the_configured_role_fails_at_once_without_waiting() {
    // Arrange: the shared server is up, but knows no such role; a long wait is allowed.
    let config = test_config(&[]);
    let url = "postgres://tenantry_no_such_role@127.0.0.1:5432/tenantry";
    let started = Instant::now();

    // Act
    let output = run_tenantry(
        &config,
        &[("DATABASE_URL", url), ("DATABASE_CONNECT_TIMEOUT", "60s")],
        &["migrate"],
    )
    .await;
    let took = started.elapsed();

    // Assert
    assert_eq!(
        output.code,
        Some(78),
        "expected exit status 78 (bad configuration); stderr:\n{}",
        output.stderr
    );
    assert!(
        took < Duration::from_secs(5),
        "no waiting for what waiting cannot mend: took {took:?}"
    );
    assert!(
        output.stderr.contains("DATABASE_URL")
            && output
                .stderr
                .contains("role \"tenantry_no_such_role\" does not exist")
            && !output.stderr.contains("retrying"),
        "the error says the server refused DATABASE_URL's role, and nothing was retried; stderr:\n{}",
        output.stderr
    );
}
