//! `/v1/events` (Server-Sent Events) and `/v1/realtime` (WebSocket): the tenant's committed
//! events as they happen, resumable from the last one seen, and ephemeral messages
//! between the tenant's clients. The sessions behind both are `realtime::session`'s; this
//! module only speaks the two wire protocols.

use std::{collections::HashMap, convert::Infallible, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    Extension,
    extract::{
        State,
        ws::{
            CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
            rejection::WebSocketUpgradeRejection,
        },
    },
    http::{HeaderMap, Uri},
    response::{
        IntoResponse, Response,
        sse::{self, KeepAlive, Sse},
    },
};
use futures_util::{SinkExt, Stream, StreamExt, stream::SplitSink};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    access::{Principal, Scope, scope},
    error::{Error, ErrorKind},
    events::feed::Since,
    http::{
        AppState,
        auth::{Authorized, presented_credential, refuse_credential_in_url},
        extract::ApiQuery,
        problem::Problem,
        server::ConnectionCloser,
    },
    realtime::{
        Broadcast, Channel, Cursor, Event, Filter, WireEvent,
        session::{Closed, Credential, Next, Realtime, Session},
        stream::{self, Resume},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_events))
        .routes(routes!(open_realtime))
}

/// How long the server waits after a suggested reconnection (`retry:`) — the SSE client's
/// reconnection delay.
const SSE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only these event types: a comma-separated list of types (`order.paid`), prefixes
    /// (`order.*`) or `*`. Every type the credential may read when absent.
    #[param(
        min_length = 1,
        max_length = 1000,
        pattern = "^[a-z0-9_.*,]+$",
        example = "order.*,product.stock_changed"
    )]
    pub types: Option<String>,
    /// Only this stream's events: one order's, product's or customer's id.
    pub stream_id: Option<Uuid>,
    /// Resume after this event id, as `Last-Event-ID` does (the header wins when both are
    /// sent).
    #[param(
        min_length = 3,
        max_length = 41,
        pattern = "^[0-9]+-[0-9]+$",
        example = "812-4031"
    )]
    pub after: Option<String>,
}

impl EventsQuery {
    fn filter(&self) -> Result<Filter, Error> {
        let types = match &self.types {
            None => Vec::new(),
            Some(types) => Filter::parse_types(types.split(','))?,
        };
        Ok(Filter {
            types,
            stream_id: self.stream_id,
            stream_type: None,
        })
    }
}

/// The tenant's committed events as Server-Sent Events (`text/event-stream`): order events
/// (`order.placed`, `order.paid`, …), product events (`product.created`, `product.updated`,
/// `product.stock_changed`, `product.deleted`) and customer events (`customer.created`,
/// `customer.updated`, `customer.erased`; without personal data). Each arrives as
///
/// ```text
/// id: 812-4031
/// event: order.placed
/// data: {"id":"812-4031","type":"order.placed","stream_type":"order","stream_id":"…","version":1,"occurred_at":"…","data":{…}}
/// ```
///
/// in commit order, and only what the credential may read (`orders:read` for orders,
/// `catalog:read` for products and customers). Send the last `id` you received as
/// `Last-Event-ID` (browsers' `EventSource` does so by itself) or `?after=` to resume: every
/// event committed after it arrives once, in order, then the live ones.
///
/// A `: heartbeat` comment comes every `TENANTRY_REALTIME_HEARTBEAT` (15 s) on an idle
/// stream. The server ends a stream with an `event: close` whose data says why
/// (`{"code": "slow_consumer" | "going_away" | "unauthenticated" | …, "message"}`):
/// `slow_consumer` when events came faster than the client read them, `going_away` at
/// shutdown, the credential's refusal when it is revoked, expires or its tenant is
/// suspended. Reconnect with `Last-Event-ID` in every case but the last, and nothing is
/// lost. Each open stream takes one of the plan's `realtime_connections`; connection
/// minutes are metered.
#[utoipa::path(
    get, path = "/v1/events", tag = "realtime",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received: resume after it"),
    ),
    security(("bearer" = ["realtime:subscribe"]), ("api_key" = ["realtime:subscribe"])),
    responses(
        (status = 200, description = "The event stream; each event's `data` is a `RealtimeEvent`", content_type = "text/event-stream", body = WireEvent),
        (status = 400, description = "A malformed query or event id to resume after (`invalid_query`, `invalid_event_id`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Every realtime connection the plan allows is open (`quota_exceeded`), or the credential lacks `realtime:subscribe` (`insufficient_scope`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An event type pattern that is not one (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stream_events(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::RealtimeSubscribe>,
    headers: HeaderMap,
    closer: Option<Extension<ConnectionCloser>>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, Error> {
    let filter = query.filter()?;
    let after = match headers.get("last-event-id") {
        Some(id) => Some(
            id.to_str()
                .map_err(|_| Cursor::invalid())?
                .trim()
                .parse::<Cursor>()?,
        ),
        None => query
            .after
            .as_deref()
            .map(str::parse::<Cursor>)
            .transpose()?,
    };
    let credential = presented_credential(&headers).ok_or_else(|| {
        Error::unauthenticated("send `Authorization: Bearer <token>` or `X-API-Key: <key>`")
    })??;
    let close = closer.map(|Extension(closer)| closer.0).unwrap_or_default();
    let session = state
        .realtime
        .open(principal, credential, close, "sse")
        .await?;
    let resume = Resume::from(&session, after).await?;
    let heartbeat = state.realtime.heartbeat;
    Ok(Sse::new(event_stream(session, filter, resume))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

/// The session's events as SSE events, after a first `connected` comment, ending with an
/// `event: close` that says why.
fn event_stream(
    session: Session,
    filter: Filter,
    resume: Resume,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    let connected = sse::Event::default().retry(SSE_RETRY).comment("connected");
    let events = stream::events(session, filter, resume).map(|item| match item {
        Ok(event) => sse_event(&event),
        Err(ended) => close_event(ended.code(), &ended.message()),
    });
    futures_util::stream::once(std::future::ready(connected))
        .chain(events)
        .map(Ok)
}

fn sse_event(event: &Event) -> sse::Event {
    sse::Event::default()
        .id(event.cursor().to_string())
        .event(&event.event_type)
        .data(std::str::from_utf8(&event.json).unwrap_or("{}"))
}

fn close_event(code: &str, message: &str) -> sse::Event {
    sse::Event::default()
        .event("close")
        .data(serde_json::json!({"code": code, "message": message}).to_string())
}

/// A WebSocket for realtime events and ephemeral messages between the tenant's clients.
///
/// **Authenticate** with `Authorization: Bearer <token>` or `X-API-Key` on the upgrade
/// request (apps), or — browsers cannot set headers — with a first message
/// `{"type": "auth", "token": "<access token or API key>"}` within 10 s. Never put a
/// credential in the URL: the server refuses a query string naming one (`token_in_query`).
/// The credential needs `realtime:subscribe`; it is checked again whenever the tenant's
/// credentials change and every minute, and an `auth` message at any time replaces it
/// (refresh before an access token expires).
///
/// **Messages** are JSON text frames with a `type`. A client sends:
/// - `{"type": "subscribe", "channel": "orders", "after": "812-4031", "ref": "1"}` — events of
///   `orders`, `orders:<id>` (one order), `products`, `products:<id>`, `customers`,
///   `customers:<id>`; `after` (optional) resumes after that event id, every missed event
///   once, in order; any other channel (`room:lobby`) carries broadcasts only;
/// - `{"type": "unsubscribe", "channel": "orders", "ref": "2"}`;
/// - `{"type": "broadcast", "channel": "room:lobby", "data": {…}, "ref": "3"}` — to the
///   channel's subscribers of the tenant on every instance, not stored, not echoed to the
///   sender; at most `TENANTRY_REALTIME_BROADCASTS_PER_SECOND` (10) a second, bursts of
///   twice that, `data` up to 8 KiB;
/// - `{"type": "ping", "ref": "4"}`.
///
/// The server sends `{"type": "ready", "connection_id", "tenant_id"}` once authenticated,
/// `{"type": "ack", "ref", "op", "channel"}` for each request carried out,
/// `{"type": "event", "channel", "event": <RealtimeEvent>}`,
/// `{"type": "broadcast", "channel", "data"}`, `{"type": "pong", "ref"}`, and
/// `{"type": "error", "ref", "code", "message"}` with a stable `code`:
/// `malformed_message`, `unknown_message_type`, `validation_failed` (a bad channel or type
/// pattern), `invalid_event_id`, `insufficient_scope`, `not_subscribed`,
/// `too_many_subscriptions`, `message_too_large`, `rate_limited`, `auth_required`,
/// `tenant_mismatch`.
///
/// **Closing codes**: `1000` normal; `1001` going away (the server shuts down: reconnect,
/// resubscribe with `after`); `4000` slow consumer (same); `4001` unauthenticated (no `auth`
/// in time, a credential that does not verify, was revoked or expired); `4003` forbidden (a
/// suspended tenant, a missing scope); `4029` every realtime connection of the plan is open.
/// Each open socket takes one of the plan's `realtime_connections`; minutes are metered.
///
/// ```js
/// const ws = new WebSocket("wss://api.example.com/v1/realtime");
/// let last = localStorage.getItem("last-event-id");
/// ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: accessToken }));
/// ws.onmessage = ({ data }) => {
///   const message = JSON.parse(data);
///   if (message.type === "ready")
///     ws.send(JSON.stringify({ type: "subscribe", channel: "orders", after: last ?? undefined, ref: "orders" }));
///   if (message.type === "event") {
///     handle(message.event);
///     localStorage.setItem("last-event-id", (last = message.event.id));
///   }
/// };
/// ws.onclose = ({ code }) => { if (code !== 4001 && code !== 4003) setTimeout(reconnect, 1000); };
/// ```
#[utoipa::path(
    get, path = "/v1/realtime", tag = "realtime",
    security((), ("bearer" = ["realtime:subscribe"]), ("api_key" = ["realtime:subscribe"])),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request (`upgrade_required`), or a credential in the query string (`token_in_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Every realtime connection the plan allows is open (`quota_exceeded`), or the credential lacks `realtime:subscribe` (`insufficient_scope`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn open_realtime(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    principal: Result<Principal, Error>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    refuse_credential_in_url(&uri)?;
    let upgrade = upgrade.map_err(|rejection| {
        Error::malformed(
            "upgrade_required",
            format!("this route speaks WebSocket only: {rejection}"),
        )
    })?;
    let realtime = Arc::clone(&state.realtime);
    let close = CancellationToken::new();
    // A credential in the headers is verified before the upgrade, so a refusal is an HTTP
    // answer; without one the client has a first message to authenticate.
    let session = match presented_credential(&headers) {
        Some(credential) => {
            let principal = principal?;
            principal.require(Scope::RealtimeSubscribe)?;
            Some(
                realtime
                    .open(principal, credential?, close.clone(), "websocket")
                    .await?,
            )
        }
        None => None,
    };
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            Connection::run(socket, realtime, session, close).await;
        }))
}

/// The largest message a client may send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The largest `data` of a broadcast, as JSON.
const MAX_BROADCAST_BYTES: usize = 8 * 1024;
/// Channels one connection may be subscribed to.
const MAX_SUBSCRIPTIONS: usize = 64;
/// How long a connection without a header credential has to send `auth`.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client sends (its `ref`, echoed in the answer, is read apart).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Auth {
        token: String,
    },
    Subscribe {
        channel: String,
        after: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Broadcast {
        channel: String,
        data: serde_json::Value,
    },
    Ping {},
}

/// One channel a connection is subscribed to.
struct Subscription {
    /// The events it carries (`None`: broadcasts only).
    events: Option<Filter>,
    /// What it has sent (or passed over).
    since: Since,
}

/// Why a connection is being closed: its code and reason.
struct Closing(u16, String);

impl Closing {
    fn for_error(error: &Error) -> Self {
        let code = match error.kind() {
            ErrorKind::Unauthenticated => 4001,
            ErrorKind::Forbidden if error.code() == "quota_exceeded" => 4029,
            ErrorKind::Forbidden => 4003,
            ErrorKind::Unavailable => 1013,
            _ => 1011,
        };
        Self(code, error.code().to_owned())
    }

    fn for_closed(closed: &Closed) -> Self {
        match closed {
            Closed::SlowConsumer => Self(4000, "slow_consumer".to_owned()),
            Closed::GoingAway => Self(1001, "going_away".to_owned()),
            Closed::Refused(error) => Self::for_error(error),
        }
    }
}

struct Connection {
    sink: SplitSink<WebSocket, Message>,
    /// Cut by the hub if the client stops reading after overflowing.
    close: CancellationToken,
}

impl Connection {
    async fn run(
        socket: WebSocket,
        realtime: Arc<Realtime>,
        session: Option<Session>,
        close: CancellationToken,
    ) {
        let (sink, mut stream) = socket.split();
        let mut connection = Connection {
            sink,
            close: close.clone(),
        };
        let session = match session {
            Some(session) => Ok(session),
            None => connection.authenticate(&mut stream, &realtime).await,
        };
        let closing = match session {
            Ok(mut session) => {
                if connection.ready(&session).await.is_ok() {
                    connection.serve(&mut stream, &mut session).await
                } else {
                    return;
                }
            }
            Err(closing) => closing,
        };
        let Closing(code, reason) = closing;
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = connection.send(Message::Close(Some(frame))).await;
    }

    /// Sends a frame, unless the connection is cut first.
    async fn send(&mut self, message: Message) -> Result<(), ()> {
        tokio::select! {
            sent = self.sink.send(message) => sent.map_err(drop),
            () = self.close.cancelled() => Err(()),
        }
    }

    async fn send_json(&mut self, value: serde_json::Value) -> Result<(), ()> {
        self.send(Message::Text(value.to_string().into())).await
    }

    async fn error(
        &mut self,
        reference: Option<&serde_json::Value>,
        code: &str,
        message: &str,
    ) -> Result<(), ()> {
        self.send_json(serde_json::json!({
            "type": "error", "ref": reference, "code": code, "message": message,
        }))
        .await
    }

    async fn ready(&mut self, session: &Session) -> Result<(), ()> {
        self.send_json(serde_json::json!({
            "type": "ready",
            "connection_id": session.id,
            "tenant_id": session.principal().tenant_id(),
        }))
        .await
    }

    /// Waits for the `auth` message of a connection opened without a credential.
    async fn authenticate(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        realtime: &Arc<Realtime>,
    ) -> Result<Session, Closing> {
        let deadline = Instant::now() + AUTH_TIMEOUT;
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Closing(4001, "auth_timeout".to_owned()));
                }
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    return Err(Closing(1000, String::new()));
                }
                Some(Ok(_)) => continue,
            };
            match serde_json::from_str::<ClientMessage>(&text) {
                Ok(ClientMessage::Auth { token }) => {
                    let credential = Credential::bearer(token.trim());
                    let opened = async {
                        let principal = realtime.authenticate(&credential).await?;
                        realtime
                            .open(principal, credential, self.close.clone(), "websocket")
                            .await
                    };
                    return opened.await.map_err(|error| Closing::for_error(&error));
                }
                Ok(_) => {
                    let _ = self
                        .error(
                            None,
                            "auth_required",
                            "send `{\"type\": \"auth\", \"token\": …}` first",
                        )
                        .await;
                }
                Err(_) => {
                    let _ = self
                        .error(
                            None,
                            "malformed_message",
                            "a message is a JSON object with a known `type`",
                        )
                        .await;
                }
            }
        }
    }

    /// Serves an authenticated connection until it ends; how to close it.
    async fn serve(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        session: &mut Session,
    ) -> Closing {
        let per_second =
            NonZeroU32::new(session.realtime().broadcasts_per_second).unwrap_or(NonZeroU32::MIN);
        let broadcasts: DefaultDirectRateLimiter =
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(
                per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN)),
            ));
        let heartbeat = session.realtime().heartbeat;
        let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let mut heard = Instant::now();
        let mut subscriptions: HashMap<Channel, Subscription> = HashMap::new();
        loop {
            tokio::select! {
                message = stream.next() => {
                    heard = Instant::now();
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            if self.error(None, "malformed_message", "messages are JSON text frames").await.is_err() {
                                return Closing(1000, String::new());
                            }
                            continue;
                        }
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return Closing(1000, String::new()),
                        Some(Ok(_)) => continue,
                    };
                    if let Err(closing) = self.handle(&text, session, &mut subscriptions, &broadcasts).await {
                        return closing;
                    }
                }
                next = session.next() => {
                    let sent = match next {
                        Next::Event(event) => self.event(&event, &mut subscriptions).await,
                        Next::Broadcast(broadcast) => self.broadcast(&broadcast, session.id, &subscriptions).await,
                        Next::Closed(closed) => return Closing::for_closed(&closed),
                    };
                    if sent.is_err() {
                        return Closing(1000, String::new());
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > heartbeat * 3 {
                        return Closing(1001, "heartbeat_timeout".to_owned());
                    }
                    if self.send(Message::Ping(Default::default())).await.is_err() {
                        return Closing(1000, String::new());
                    }
                }
                () = self.close.cancelled() => return Closing(4000, "slow_consumer".to_owned()),
            }
        }
    }

    /// Sends `event` on each subscribed channel that carries it.
    async fn event(
        &mut self,
        event: &Event,
        subscriptions: &mut HashMap<Channel, Subscription>,
    ) -> Result<(), ()> {
        for (channel, subscription) in subscriptions.iter_mut() {
            let carries = subscription
                .events
                .as_ref()
                .is_some_and(|filter| filter.matches(event));
            if carries && subscription.since.admits(event.position) {
                subscription.since.advance(event.position);
                let message = event_message(channel, event);
                self.send(Message::Text(message.into())).await?;
            }
        }
        Ok(())
    }

    async fn broadcast(
        &mut self,
        broadcast: &Broadcast,
        me: Uuid,
        subscriptions: &HashMap<Channel, Subscription>,
    ) -> Result<(), ()> {
        let subscribed = subscriptions
            .keys()
            .any(|channel| channel.as_str() == broadcast.channel);
        if broadcast.origin == me || !subscribed {
            return Ok(());
        }
        self.send(Message::Text(broadcast.message.clone().into()))
            .await
    }

    /// Carries out one client message. `Err` closes the connection.
    async fn handle(
        &mut self,
        text: &str,
        session: &mut Session,
        subscriptions: &mut HashMap<Channel, Subscription>,
        broadcasts: &DefaultDirectRateLimiter,
    ) -> Result<(), Closing> {
        let gone = |()| Closing(1000, String::new());
        let message = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) if value.is_object() => value,
            _ => {
                return self
                    .error(
                        None,
                        "malformed_message",
                        "a message is a JSON object with a `type`",
                    )
                    .await
                    .map_err(gone);
            }
        };
        let reference = message.get("ref").cloned();
        let reference = reference.as_ref();
        let message = match ClientMessage::deserialize(&message) {
            Ok(message) => message,
            Err(error) => {
                let known = message
                    .get("type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| {
                        matches!(
                            t,
                            "auth" | "subscribe" | "unsubscribe" | "broadcast" | "ping"
                        )
                    });
                let (code, text) = if known {
                    ("malformed_message", format!("{error}"))
                } else {
                    (
                        "unknown_message_type",
                        "`type` is one of auth, subscribe, unsubscribe, broadcast, ping".to_owned(),
                    )
                };
                return self.error(reference, code, &text).await.map_err(gone);
            }
        };
        match message {
            ClientMessage::Ping { .. } => self
                .send_json(serde_json::json!({"type": "pong", "ref": reference}))
                .await
                .map_err(gone),
            ClientMessage::Auth { token } => match session
                .replace_credential(Credential::bearer(token.trim()))
                .await
            {
                Ok(()) => self
                    .send_json(serde_json::json!({"type": "ack", "ref": reference, "op": "auth"}))
                    .await
                    .map_err(gone),
                Err(error) if error.kind() == ErrorKind::Unavailable => self
                    .error(reference, error.code(), &error.to_string())
                    .await
                    .map_err(gone),
                Err(error) => Err(Closing::for_error(&error)),
            },
            ClientMessage::Subscribe { channel, after, .. } => {
                match self
                    .subscribe(
                        session,
                        subscriptions,
                        &channel,
                        after.as_deref(),
                        reference,
                    )
                    .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => self
                        .error(reference, error.code(), &error_text(&error))
                        .await
                        .map_err(gone),
                    Err(()) => Err(Closing(1000, String::new())),
                }
            }
            ClientMessage::Unsubscribe { channel, .. } => {
                let removed = Channel::parse(&channel)
                    .ok()
                    .and_then(|c| subscriptions.remove(&c));
                if removed.is_some() {
                    self.send_json(serde_json::json!({"type": "ack", "ref": reference, "op": "unsubscribe", "channel": channel}))
                        .await
                        .map_err(gone)
                } else {
                    self.error(
                        reference,
                        "not_subscribed",
                        "this connection is not subscribed to that channel",
                    )
                    .await
                    .map_err(gone)
                }
            }
            ClientMessage::Broadcast { channel, data, .. } => {
                let channel = match Channel::parse(&channel) {
                    Ok(channel) => channel,
                    Err(error) => {
                        return self
                            .error(reference, error.code(), &error_text(&error))
                            .await
                            .map_err(gone);
                    }
                };
                let message = serde_json::json!({"type": "broadcast", "channel": channel.as_str(), "data": data}).to_string();
                if message.len() > MAX_BROADCAST_BYTES + 128 {
                    return self
                        .error(
                            reference,
                            "message_too_large",
                            "a broadcast's `data` is at most 8 KiB of JSON",
                        )
                        .await
                        .map_err(gone);
                }
                if let Err(not_until) = broadcasts.check() {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    return self
                        .send_json(serde_json::json!({
                            "type": "error", "ref": reference, "code": "rate_limited",
                            "message": "too many broadcasts from this connection; retry after `retry_after_ms`",
                            "retry_after_ms": wait.as_millis() as u64,
                        }))
                        .await
                        .map_err(gone);
                }
                session
                    .realtime()
                    .relay
                    .send(Broadcast {
                        tenant: session.principal().tenant_id(),
                        channel: channel.as_str().to_owned(),
                        origin: session.id,
                        message,
                    })
                    .await;
                self.send_json(serde_json::json!({"type": "ack", "ref": reference, "op": "broadcast", "channel": channel.as_str()}))
                    .await
                    .map_err(gone)
            }
        }
    }

    /// Subscribes to a channel, sending what it missed after `after` first. The outer
    /// `Err` is a connection gone; the inner one a refusal to tell the client.
    async fn subscribe(
        &mut self,
        session: &Session,
        subscriptions: &mut HashMap<Channel, Subscription>,
        channel: &str,
        after: Option<&str>,
        reference: Option<&serde_json::Value>,
    ) -> Result<Result<(), Error>, ()> {
        let prepared = (|| {
            let channel = Channel::parse(channel)?;
            let events = channel.events(session.principal())?;
            let after = after.map(str::parse::<Cursor>).transpose()?;
            if !subscriptions.contains_key(&channel) && subscriptions.len() >= MAX_SUBSCRIPTIONS {
                return Err(Error::unprocessable(
                    "too_many_subscriptions",
                    "a connection may be subscribed to at most 64 channels",
                ));
            }
            Ok((channel, events, after))
        })();
        let (channel, events, after) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return Ok(Err(error)),
        };
        let mut since = match after {
            Some(Cursor(after)) if events.is_some() => Since::after(after),
            _ => match session.now().await {
                Ok(now) => now,
                Err(error) => return Ok(Err(error)),
            },
        };
        self.send_json(serde_json::json!({"type": "ack", "ref": reference, "op": "subscribe", "channel": channel.as_str()}))
            .await?;
        if let (Some(filter), Some(_)) = (&events, after) {
            loop {
                let missed = match session.missed(filter, since.last()).await {
                    Ok(missed) => missed,
                    Err(error) => return Ok(Err(error)),
                };
                for event in &missed.events {
                    self.send(Message::Text(event_message(&channel, event).into()))
                        .await?;
                }
                since.advance(missed.next);
                if missed.done {
                    break;
                }
            }
        }
        let since = match subscriptions.get(&channel) {
            Some(subscription) => since.merge(&subscription.since),
            None => since,
        };
        subscriptions.insert(channel, Subscription { events, since });
        Ok(Ok(()))
    }
}

/// An error's message, with its first field's message when it names one.
fn error_text(error: &Error) -> String {
    match error.fields().first() {
        Some(field) => format!("{}: {}", field.field, field.message),
        None => error.to_string(),
    }
}

/// `{"type": "event", "channel", "event"}`, built around the event's shared JSON.
fn event_message(channel: &Channel, event: &Event) -> String {
    let channel = serde_json::to_string(channel.as_str()).unwrap_or_else(|_| "\"\"".to_owned());
    let event = std::str::from_utf8(&event.json).unwrap_or("{}");
    format!(r#"{{"type":"event","channel":{channel},"event":{event}}}"#)
}
