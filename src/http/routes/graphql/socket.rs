//! `GET /graphql` upgraded to a WebSocket speaking `graphql-transport-ws`: subscriptions,
//! and queries and mutations as well, over one connection.
//!
//! The protocol itself (`connection_init`, `subscribe`, `next`, `complete`, pings) is
//! `async-graphql`'s; this module decides who the connection is and when it ends:
//! - **Who**: a credential in the upgrade request's headers was verified before the
//!   upgrade (a refusal is an HTTP answer); without one, the `connection_init` payload
//!   carries it (`{"authorization": "Bearer …"}` or `{"apiKey": "…"}`), refused with close
//!   code `4403`. The URL never does.
//! - **Each operation** verifies that credential again (from `auth::cache` when it was
//!   checked seconds ago), so a revoked key stops working on an open socket too, and gets
//!   the same [`Caller`](crate::graphql::Caller) and budget as over HTTP. A subscription's
//!   session checks it again while it lives, as every realtime session does.
//! - **When it ends**: the client goes; no `connection_init` within [`INIT_TIMEOUT`]
//!   (`4408`); a subscriber stopped reading after overflowing (`4000`, cut by the hub);
//!   the server shuts down — each subscription ends with `going_away`, then the socket
//!   closes with `1001`.

use std::{
    any::TypeId,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_graphql::{
    Data, Executor, Request, Response,
    http::{WebSocket as Protocol, WebSocketProtocols, WsMessage},
};
use axum::{
    extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    http::{HeaderMap, Uri, header},
    response::Response as HttpResponse,
};
use futures_util::{
    FutureExt, SinkExt, Stream, StreamExt,
    future::ready,
    stream::{BoxStream, SplitSink},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    error::Error,
    graphql::{
        cost,
        error::to_server_error,
        subscription::{Streams, Subscriber},
    },
    http::{
        AppState,
        auth::{presented_credential, refuse_credential_in_url},
    },
    realtime::session::Credential,
};

/// The one subprotocol served.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// How long a connection has to send `connection_init`.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message a client may send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How long a shutting-down connection waits for its subscriptions to say `going_away`.
const DRAIN: Duration = Duration::from_secs(5);

/// Upgrades `GET /graphql`. `caller` is the authentication layer's verdict on the headers'
/// credential, which only matters when there is one.
pub fn open(
    state: AppState,
    caller: Result<(), Error>,
    headers: &HeaderMap,
    uri: &Uri,
    upgrade: WebSocketUpgrade,
) -> Result<HttpResponse, Error> {
    refuse_credential_in_url(uri)?;
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|protocol| protocol.trim().eq_ignore_ascii_case(PROTOCOL));
    if !offered {
        return Err(Error::malformed(
            "upgrade_required",
            "GraphQL over WebSocket speaks `graphql-transport-ws`: ask for it in \
             `Sec-WebSocket-Protocol`",
        ));
    }
    // A credential in the headers is verified before the upgrade, so a refusal is an HTTP
    // answer; without one, `connection_init` brings it.
    let credential = match presented_credential(headers) {
        Some(credential) => {
            caller?;
            Some(credential?)
        }
        None => None,
    };
    Ok(upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, state, credential)))
}

/// The connection's credential, in its data once `connection_init` is accepted.
#[derive(Clone)]
struct Connected(Credential);

/// The schema as one connection's operations reach it: each verified again and given
/// its caller, budget and subscriber.
#[derive(Clone)]
struct Operations {
    state: AppState,
    close: CancellationToken,
    streams: Streams,
}

impl Executor for Operations {
    async fn execute(&self, request: Request) -> Response {
        // The protocol runs everything as a stream; this is for completeness only.
        self.execute_stream(request, None)
            .next()
            .await
            .unwrap_or_default()
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let operations = self.clone();
        let connected = session_data
            .as_deref()
            .and_then(|data| data.get(&TypeId::of::<Connected>()))
            .and_then(|data| data.downcast_ref::<Connected>())
            .cloned();
        async move {
            let Some(Connected(credential)) = connected else {
                return refused(&Error::unauthenticated("send `connection_init` first"));
            };
            let state = &operations.state;
            let authenticated = match state.realtime.verify(&credential).await {
                Ok(authenticated) => authenticated,
                Err(error) => return refused(&error),
            };
            let (mut request, budget) =
                super::prepare(state, authenticated.principal, authenticated.rate, request);
            // Held to the same limits and budget as over HTTP, charged once per operation
            // (a subscription's when it starts).
            if let (_, Err(refusal)) =
                cost::admit(&state.graphql_settings, &budget, &mut request).await
            {
                return futures_util::stream::once(ready(Response::from_errors(vec![refusal])))
                    .boxed();
            }
            request.data.insert(Subscriber {
                realtime: Arc::clone(&state.realtime),
                credential,
                close: operations.close.clone(),
                streams: operations.streams.clone(),
            });
            Executor::execute_stream(&state.graphql, request, session_data)
        }
        .flatten_stream()
        .boxed()
    }
}

/// An operation refused before it ran, as its one answer.
fn refused(error: &Error) -> BoxStream<'static, Response> {
    futures_util::stream::once(ready(Response::from_errors(vec![to_server_error(error)]))).boxed()
}

/// The credential a `connection_init` payload carries: `{"authorization": "Bearer …"}`
/// or `{"apiKey": "…"}`.
fn credential_in(payload: &serde_json::Value) -> Result<Credential, Error> {
    let text = |name: &str| payload.get(name).and_then(serde_json::Value::as_str);
    if let Some(authorization) = text("authorization").or_else(|| text("Authorization")) {
        let token = authorization
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Error::unauthenticated("`authorization` must be `Bearer <token>`"))?;
        return Ok(Credential::bearer(token));
    }
    if let Some(key) = text("apiKey") {
        return Ok(Credential::api_key(key.trim()));
    }
    Err(Error::unauthenticated(
        "send `{\"authorization\": \"Bearer <token>\"}` or `{\"apiKey\": \"<key>\"}` in \
         `connection_init`",
    ))
}

/// Accepts `connection_init`: the headers' credential, or the payload's once it verifies.
/// A refusal's code is left in `refusal` for the close frame.
async fn initialise(
    state: AppState,
    header: Option<Credential>,
    payload: serde_json::Value,
    refusal: Arc<Mutex<Option<&'static str>>>,
) -> async_graphql::Result<Data> {
    let checked = async {
        match header {
            Some(credential) => Ok(credential),
            None => {
                let credential = credential_in(&payload)?;
                state.realtime.verify(&credential).await?;
                Ok(credential)
            }
        }
    };
    match checked.await {
        Ok(credential) => {
            let mut data = Data::default();
            data.insert(Connected(credential));
            Ok(data)
        }
        Err(error) => {
            let error: Error = error;
            *refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.code());
            Err(async_graphql::Error::new(error.code()))
        }
    }
}

/// A close frame.
struct Closing(u16, String);

async fn serve(socket: WebSocket, state: AppState, header: Option<Credential>) {
    let close = CancellationToken::new();
    let streams = Streams::default();
    let refusal = Arc::new(Mutex::new(None));
    let (sink, input) = socket.split();
    let input = input
        .take_while(|message| ready(message.is_ok()))
        .filter_map(|message| {
            ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let operations = Operations {
        state: state.clone(),
        close: close.clone(),
        streams: streams.clone(),
    };
    let init = {
        let (state, refusal) = (state.clone(), Arc::clone(&refusal));
        move |payload| initialise(state, header, payload, refusal)
    };
    let protocol =
        Protocol::new(operations, input, WebSocketProtocols::GraphQLWS).on_connection_init(init);
    let mut connection = Connection { sink, close };
    let closing = connection.pump(protocol, &state, &streams, &refusal).await;
    if let Some(Closing(code, reason)) = closing {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = connection.send(Message::Close(Some(frame))).await;
    }
}

struct Connection {
    sink: SplitSink<WebSocket, Message>,
    /// Cut by the hub when a subscriber overflowed and then never read.
    close: CancellationToken,
}

impl Connection {
    /// Sends a frame, unless the connection is cut first.
    async fn send(&mut self, message: Message) -> Result<(), ()> {
        tokio::select! {
            sent = self.sink.send(message) => sent.map_err(drop),
            () = self.close.cancelled() => Err(()),
        }
    }

    /// Sends the protocol's messages until the connection ends; how to close it (`None`:
    /// it is gone).
    async fn pump(
        &mut self,
        protocol: impl Stream<Item = WsMessage>,
        state: &AppState,
        streams: &Streams,
        refusal: &Mutex<Option<&'static str>>,
    ) -> Option<Closing> {
        futures_util::pin_mut!(protocol);
        let realtime = &state.realtime;
        let heartbeat = realtime.heartbeat;
        let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let init_deadline = Instant::now() + INIT_TIMEOUT;
        let mut acknowledged = false;
        loop {
            tokio::select! {
                message = protocol.next() => match message? {
                    WsMessage::Text(text) => {
                        acknowledged |= text.contains("\"connection_ack\"");
                        self.send(Message::Text(text.into())).await.ok()?;
                    }
                    WsMessage::Close(code, reason) => return Some(closing(code, reason, refusal)),
                },
                _ = ping.tick() => self.send(Message::Ping(Default::default())).await.ok()?,
                () = tokio::time::sleep_until(init_deadline), if !acknowledged => {
                    return Some(Closing(4408, "Connection initialisation timeout".to_owned()));
                }
                () = self.close.cancelled() => return Some(Closing(4000, "slow_consumer".to_owned())),
                () = realtime.hub.stopped() => {
                    self.drain(&mut protocol, streams).await?;
                    return Some(Closing(1001, "going_away".to_owned()));
                }
            }
        }
    }

    /// At shutdown: sends what the subscriptions say (each ends with `going_away`) until
    /// none is open, or [`DRAIN`] has passed.
    async fn drain(
        &mut self,
        protocol: &mut (impl Stream<Item = WsMessage> + Unpin),
        streams: &Streams,
    ) -> Option<()> {
        let deadline = Instant::now() + DRAIN;
        loop {
            tokio::select! {
                biased;
                message = protocol.next() => match message {
                    Some(WsMessage::Text(text)) => self.send(Message::Text(text.into())).await.ok()?,
                    Some(WsMessage::Close(..)) | None => return Some(()),
                },
                () = streams.ended() => return Some(()),
                () = tokio::time::sleep_until(deadline) => return Some(()),
            }
        }
    }
}

/// The protocol's close, with a refused `connection_init` as `4403` and its code (the
/// protocol's "Forbidden"), rather than `async-graphql`'s `1002`.
fn closing(code: u16, reason: String, refusal: &Mutex<Option<&'static str>>) -> Closing {
    match *refusal.lock().unwrap_or_else(PoisonError::into_inner) {
        Some(refused) if code == 1002 => Closing(4403, refused.to_owned()),
        _ => Closing(code, reason),
    }
}
