//! Realtime: Server-Sent Events (`/v1/events`) and the WebSocket (`/v1/realtime`) —
//! delivery across instances, resuming without loss or repetition, tenant isolation under
//! concurrent writers, slow consumers, revocation, seats, shutdown, broadcasts.
//! A client of each protocol is here; the tests are by concern.

mod limits;
mod sse;
mod websocket;

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};

use crate::helpers::{TestApp, TestTenant, id, place_ok};

/// How long a test waits for something that should arrive at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One Server-Sent Event as received.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

enum Block {
    Text(String),
    Ended,
    Silent,
}

/// A reader of a `text/event-stream` response.
pub struct SseClient {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseClient {
    /// Opens `/v1/events` with `query` as `credential`, resuming after `last_event_id`.
    pub async fn connect(
        app: &TestApp,
        credential: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> Self {
        let response = Self::request(app, credential, query, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK, "the event stream opens");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream is served as one"
        );
        let mut client = Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        };
        client.wait_for_comment("connected").await;
        client
    }

    /// The response to opening `/v1/events`, whatever it is.
    pub async fn request(
        app: &TestApp,
        credential: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = app
            .client
            .get(app.url(&format!("/v1/events{query}")))
            .bearer_auth(credential);
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        request.send().await.expect("the server answers")
    }

    /// The next block of the stream (an event or a comment).
    async fn next_block(&mut self, within: Duration) -> Block {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Block::Text(block);
            }
            let Ok(chunk) = tokio::time::timeout_at(deadline, self.body.next()).await else {
                return Block::Silent;
            };
            match chunk {
                Some(Ok(bytes)) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                Some(Err(_)) | None => return Block::Ended,
            }
        }
    }

    async fn wait_for_comment(&mut self, comment: &str) {
        loop {
            let Block::Text(block) = self.next_block(PATIENCE).await else {
                panic!("the stream opens with the comment {comment:?}");
            };
            if block
                .lines()
                .any(|line| line == format!(": {comment}") || line == format!(":{comment}"))
            {
                return;
            }
        }
    }

    /// Whether the stream ends (rather than stays silent) within `within`, events aside.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        loop {
            match self.next_block(within).await {
                Block::Ended => return true,
                Block::Silent => return false,
                Block::Text(_) => continue,
            }
        }
    }

    /// The next event (comments skipped), `None` when the stream ended or nothing came
    /// within `within`.
    pub async fn next_event_within(&mut self, within: Duration) -> Option<SseEvent> {
        loop {
            let Block::Text(block) = self.next_block(within).await else {
                return None;
            };
            let mut event = SseEvent {
                id: None,
                event: "message".to_owned(),
                data: Value::Null,
            };
            let mut data = String::new();
            let mut is_event = false;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    event.id = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("event:") {
                    event.event = value.trim().to_owned();
                    is_event = true;
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                    is_event = true;
                }
            }
            if is_event {
                event.data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(event);
            }
        }
    }

    pub async fn next_event(&mut self) -> SseEvent {
        self.next_event_within(PATIENCE)
            .await
            .expect("the stream delivers another event")
    }

    /// The next `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next_event().await);
        }
        events
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/realtime`, with `Authorization: Bearer <credential>` when given.
pub async fn open_socket(
    app: &TestApp,
    credential: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let url = app.url("/v1/realtime").replacen("http", "ws", 1);
    let mut request = url.into_client_request().expect("a WebSocket request");
    if let Some(credential) = credential {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {credential}")
                .parse()
                .expect("a header value"),
        );
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Sends a JSON message.
pub async fn send(socket: &mut Socket, message: Value) {
    futures::SinkExt::send(socket, Message::Text(message.to_string().into()))
        .await
        .expect("the message is sent");
}

/// The next JSON message (pings skipped); panics on a close.
pub async fn receive(socket: &mut Socket) -> Value {
    match next_frame(socket).await {
        Frame::Json(value) => value,
        Frame::Closed(code, reason) => panic!("the socket closed ({code}: {reason}) instead"),
    }
}

pub enum Frame {
    Json(Value),
    /// Closed, with the close code and reason (1006 when no close frame came).
    Closed(u16, String),
}

pub async fn next_frame(socket: &mut Socket) -> Frame {
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a message arrives in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Frame::Json(serde_json::from_str(&text).expect("messages are JSON"));
            }
            Some(Ok(Message::Close(frame))) => {
                return match frame {
                    Some(frame) => Frame::Closed(frame.code.into(), frame.reason.to_string()),
                    None => Frame::Closed(1005, String::new()),
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Frame::Closed(1006, String::new()),
        }
    }
}

/// The next message of `type`, skipping others.
pub async fn receive_type(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = receive(socket).await;
        if message["type"] == kind {
            return message;
        }
    }
}

/// Subscribes and waits for the ack.
pub async fn subscribe(socket: &mut Socket, channel: &str, after: Option<&str>) {
    let mut message = serde_json::json!({"type": "subscribe", "channel": channel, "ref": channel});
    if let Some(after) = after {
        message["after"] = after.into();
    }
    send(socket, message).await;
    let ack = receive_type(socket, "ack").await;
    assert_eq!(ack["ref"], channel);
    assert_eq!(ack["op"], "subscribe");
}

/// A tenant's customer and product, ready to take orders.
pub struct Shop {
    pub customer: Value,
    pub product: Value,
}

impl Shop {
    pub async fn open(app: &TestApp, tenant: &TestTenant) -> Self {
        let customer = app.create_customer(tenant).await;
        let product = app.create_product(tenant).await;
        // Enough stock for any test.
        let response = app
            .client
            .patch(app.url(&format!("/v1/products/{}", id(&product))))
            .bearer_auth(&tenant.token)
            .header("If-Match", format!("\"{}\"", product["version"]))
            .json(&serde_json::json!({"stock": 1_000_000}))
            .send()
            .await
            .expect("the server answers");
        let product = crate::helpers::expect_json(response, StatusCode::OK).await;
        Self { customer, product }
    }

    /// Places an order of one unit and returns its id.
    pub async fn order(&self, app: &TestApp, tenant: &TestTenant) -> String {
        let order = place_ok(app, tenant, &self.customer, &[(&self.product, 1)]).await;
        id(&order).to_owned()
    }
}

/// Only the `order.placed` events of `events`, as order ids.
pub fn placed(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "order.placed")
        .map(|e| e.data["stream_id"].as_str().unwrap().to_owned())
        .collect()
}
