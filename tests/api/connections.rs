//! Connections: a client that trickles its headers, sends nothing or idles on a keep-alive
//! connection is disconnected after its timeout; past the connection cap new connections
//! wait in the backlog instead of exhausting descriptors; shutdown has a deadline; and every
//! request knows its peer's address.
//!
//! These tests use raw TCP sockets, because an HTTP client cannot be made to misbehave.
//! Timeouts are set to a few seconds so the tests stay short; every wait is bounded.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::get};
use futures::SinkExt;
use reqwest::StatusCode;
use tenantry::{
    http::server::{self, Limits},
    startup::Application,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, sleep, timeout},
};

use crate::helpers::{
    TestApp, sigterm, spawn_app_with, spawn_server_process,
    spawn_server_process_with_descriptor_limit, test_config, unique,
};

/// The start of a request whose headers never end.
const UNFINISHED_HEAD: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";

/// A complete request for `/health/live` on a keep-alive connection.
const LIVE_REQUEST: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// How much later than its timeout a connection may be closed before a test gives up
/// (the suite runs in parallel on a small machine).
const SLACK: Duration = Duration::from_secs(5);

/// How much earlier than its timeout a close may be seen: the client's clock starts before
/// the server's (it starts before `connect`), so only timer granularity is allowed for.
const EARLY: Duration = Duration::from_millis(100);

fn socket_address(app: &TestApp) -> SocketAddr {
    app.address
        .trim_start_matches("http://")
        .parse()
        .expect("the test server's address")
}

/// Reads (and discards) what the server sends until it closes the connection; returns how
/// long after `since` that was, or `None` if it was still open after `limit`.
async fn closed_by_server(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buffer = [0u8; 1024];
    timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

/// Sends one byte of a header every half second until the server closes the connection;
/// returns how long after `since` that was, or `None` if it was still open after `limit`.
async fn trickle(mut stream: TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    if stream.write_all(UNFINISHED_HEAD).await.is_err() {
        return Some(since.elapsed());
    }
    let give_up = sleep(limit);
    tokio::pin!(give_up);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut buffer = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Some(since.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(since.elapsed());
                }
            }
            () = &mut give_up => return None,
        }
    }
}

/// Reads one response to [`LIVE_REQUEST`] (head and `Content-Length` body) and returns its
/// status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("the response has a Content-Length");
            if received.len() >= end + 4 + length {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
        let read = timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("the server answers within 5 s")
            .expect("the connection stays open until the response is complete");
        assert_ne!(
            read, 0,
            "the connection was closed before the response was complete"
        );
        received.extend_from_slice(&buffer[..read]);
    }
}

#[tokio::test]
async fn five_hundred_connections_trickling_headers_neither_stop_normal_requests_nor_stay_open() {
    let header_timeout = Duration::from_secs(5);
    let app = spawn_app_with(&[("TENANTRY_HEADER_READ_TIMEOUT", "5s")]).await;
    let tenant = app.create_tenant().await;
    let address = socket_address(&app);

    let mut trickling = Vec::new();
    for _ in 0..500 {
        let since = Instant::now();
        let stream = TcpStream::connect(address)
            .await
            .expect("the server accepts");
        trickling.push(tokio::spawn(trickle(stream, since, header_timeout + SLACK)));
    }

    // New connections, from a client with no pooled connection, are served meanwhile.
    let client = reqwest::Client::new();
    let live = timeout(
        Duration::from_secs(2),
        client.get(app.url("/health/live")).send(),
    )
    .await
    .expect("GET /health/live answers within 2 s while 500 connections trickle headers")
    .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let me = timeout(
        Duration::from_secs(2),
        client
            .get(app.url("/v1/me"))
            .bearer_auth(&tenant.token)
            .send(),
    )
    .await
    .expect("an authenticated GET /v1/me answers within 2 s while 500 connections trickle headers")
    .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert!(
        trickling.iter().all(|task| !task.is_finished()),
        "the trickling connections were still open while the normal requests were served"
    );

    for task in trickling {
        let closed = task.await.unwrap().expect(
            "the server closes a connection trickling its headers after the header timeout",
        );
        assert!(
            closed >= header_timeout - EARLY,
            "a trickling connection was closed after {closed:?}, before the 5 s header timeout"
        );
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(&[("TENANTRY_HEADER_READ_TIMEOUT", "1s")]).await;
    let since = Instant::now();
    let mut silent = TcpStream::connect(socket_address(&app)).await.unwrap();

    let closed = closed_by_server(&mut silent, since, Duration::from_secs(1) + SLACK)
        .await
        .expect("the server closes a connection that sends nothing after the 1 s header timeout");
    assert!(
        closed >= Duration::from_secs(1) - EARLY,
        "the silent connection was closed after {closed:?}, before the 1 s header timeout"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_is_closed_after_the_idle_timeout()
 {
    let idle_timeout = Duration::from_secs(3);
    let app = spawn_app_with(&[
        ("TENANTRY_HEADER_READ_TIMEOUT", "1s"),
        ("TENANTRY_IDLE_TIMEOUT", "3s"),
    ])
    .await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.unwrap();

    stream.write_all(LIVE_REQUEST).await.unwrap();
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");
    // Waiting longer than the header timeout between requests is not slow headers.
    sleep(Duration::from_millis(1500)).await;
    stream
        .write_all(LIVE_REQUEST)
        .await
        .expect("the keep-alive connection is still open after 1.5 s idle");
    assert_eq!(
        read_response(&mut stream).await,
        "HTTP/1.1 200 OK",
        "a keep-alive connection idle for longer than the header timeout (but not the idle timeout) is served"
    );
    let answered = Instant::now();

    let closed = closed_by_server(&mut stream, answered, idle_timeout + SLACK)
        .await
        .expect("the server closes an idle keep-alive connection after the 3 s idle timeout");
    assert!(
        closed >= idle_timeout - EARLY,
        "the idle connection was closed after {closed:?}, before the 3 s idle timeout"
    );
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_waits_and_is_served_once_one_closes() {
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-cap")));
    let (mut server, app) = spawn_server_process(
        &[
            ("TENANTRY_MAX_CONNECTIONS", "20"),
            ("TENANTRY_HEADER_READ_TIMEOUT", "6s"),
            ("TENANTRY_IDLE_TIMEOUT", "1s"),
        ],
        &log_file,
    )
    .await;
    let address = socket_address(&app);
    let url = app.url("/health/live");
    // The readiness probe's keep-alive connection holds a slot until it idles out.
    drop(app);
    sleep(Duration::from_millis(1500)).await;

    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(address).await.unwrap());
    }
    let opened = Instant::now();
    let waiting = tokio::spawn(async move { reqwest::Client::new().get(url).send().await });
    sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "with 20 connections open and a cap of 20, a 21st is not served yet"
    );

    drop(silent.pop());
    let response = timeout(Duration::from_secs(3), waiting)
        .await
        .expect("the 21st connection is served within 3 s of one of the 20 closing")
        .unwrap()
        .expect("the 21st connection waits, it is not refused");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        opened.elapsed() < Duration::from_secs(6),
        "served because a connection closed, not because the header timeout freed them all"
    );

    sigterm(&server);
    timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server exits after SIGTERM")
        .unwrap();
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    let _ = std::fs::remove_file(&log_file);
    assert!(
        !log.to_lowercase().contains("accept"),
        "no accept errors are logged at the connection cap; the log:\n{log}"
    );
}

#[tokio::test]
async fn at_a_1024_descriptor_limit_1300_silent_connections_neither_exhaust_descriptors_nor_stop_requests()
 {
    // This process holds the client ends: 1,300 descriptors and its own.
    let ours = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        ours >= 2048,
        "the test needs 2048 descriptors, the hard limit allows {ours}"
    );
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-nofile")));
    let (mut server, app) = spawn_server_process_with_descriptor_limit(
        1024,
        &[("TENANTRY_HEADER_READ_TIMEOUT", "2s")],
        &log_file,
    )
    .await;
    let address = socket_address(&app);
    let url = app.url("/health/live");
    drop(app);

    let silent = timeout(Duration::from_secs(10), async {
        let mut silent = Vec::new();
        for _ in 0..1300 {
            silent.push(TcpStream::connect(address).await.unwrap());
        }
        silent
    })
    .await
    .expect("1,300 connections are accepted or held in the listen backlog within 10 s");
    // Past the cap the rest wait in the listen backlog; the header timeout frees the cap's
    // worth of slots every 2 s, so a normal request is served after at most two rounds.
    let response = timeout(
        Duration::from_secs(4) + SLACK,
        reqwest::Client::new().get(url).send(),
    )
    .await
    .expect("a normal request is served once the silent connections time out")
    .expect("the normal request waits, it is not refused");
    assert_eq!(response.status(), StatusCode::OK);
    drop(silent);

    sigterm(&server);
    let status = timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server exits after SIGTERM")
        .unwrap();
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    let _ = std::fs::remove_file(&log_file);
    assert!(
        status.success(),
        "clean exit after SIGTERM, got {status}; the log:\n{log}"
    );
    assert!(
        !log.contains("Too many open files") && !log.to_lowercase().contains("accept"),
        "the server never runs out of descriptors; the log:\n{log}"
    );
}

#[tokio::test]
async fn shutdown_returns_within_its_deadline_despite_a_stuck_connection_and_a_stuck_request() {
    let config = test_config(&[
        ("TENANTRY_SHUTDOWN_TIMEOUT", "1s"),
        ("TENANTRY_HEADER_READ_TIMEOUT", "60s"),
    ]);
    let app = Application::build(&config).await.unwrap();
    let address = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    // A connection stuck in the middle of its headers...
    let mut stuck = TcpStream::connect(address).await.unwrap();
    stuck.write_all(UNFINISHED_HEAD).await.unwrap();
    // ...and a request whose body never finishes arriving.
    let (mut body, body_rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{address}/v1/auth/login"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body_rx))
            .send(),
    );
    body.send(Ok(br#"{"tenant": "#.to_vec())).await.unwrap();
    sleep(Duration::from_millis(300)).await;

    let stopping = Instant::now();
    stop.send(()).unwrap();
    timeout(Duration::from_secs(1) + SLACK, server)
        .await
        .expect("the server returns within its 1 s shutdown deadline")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_secs(1) - EARLY,
        "the server returned after {took:?}, without waiting its 1 s deadline for the stuck request"
    );

    assert!(
        closed_by_server(&mut stuck, stopping, Duration::from_secs(2))
            .await
            .is_some(),
        "the connection stuck mid-headers is closed at the deadline"
    );
    let cut = timeout(Duration::from_secs(2), in_flight)
        .await
        .expect("the stuck request's connection is closed at the deadline")
        .unwrap();
    assert!(
        cut.is_err(),
        "the stuck request is cut off, not answered: {cut:?}"
    );
    drop(body);
}

#[tokio::test]
async fn a_handler_sees_the_peer_address_of_its_connection() {
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = test_config(&[]);
    tokio::spawn(server::serve(
        listener,
        router,
        Limits::from_config(&config, None),
        std::future::pending(),
    ));

    let mut stream = TcpStream::connect(address).await.unwrap();
    let ours = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("the server answers within 5 s")
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200 OK"),
        "200 expected: {response}"
    );
    assert!(
        response.ends_with(&format!("\r\n\r\n{ours}")),
        "the handler's ConnectInfo is this socket's address {ours}: {response}"
    );
}
