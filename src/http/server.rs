//! Serving HTTP/1.1 connections: the accept loop, each connection's deadlines, the cap on
//! open connections, and the graceful shutdown with its deadline.
//!
//! This module owns what happens between the socket and the router, and nothing above
//! it: it never looks at a route, a credential or a body. What it guarantees:
//! - **Slow or silent clients are disconnected.** A request's head (request line and
//!   headers) must arrive within the header timeout — counted from the connection's
//!   accept for its first request, so a connection that sends nothing is closed too, and
//!   from the first byte for each later one. A keep-alive connection that waits longer
//!   than the idle timeout for its next request is closed. A connection is never closed
//!   by these deadlines while a request is being served: the request timeout bounds that.
//!   (hyper's own `header_read_timeout` is off: it starts when hyper starts waiting for a
//!   head, idle keep-alive included, so it cannot tell a slow client from an idle one.)
//! - **The process never runs out of descriptors.** A slot of the connection cap is taken
//!   before each accept and given back when the socket closes; at the cap the loop stops
//!   accepting and the kernel's listen backlog holds newcomers until a slot frees.
//! - **Accept errors never end the server or spin it**: a connection that failed before
//!   it was accepted is skipped, anything else (out of descriptors or memory) is logged
//!   and retried after a pause.
//! - **Shutdown has a deadline.** On the signal the listener closes, every connection is
//!   told to finish its in-flight request and close, and whatever is still open at the
//!   deadline is dropped.
//! - **Every request carries its peer's address** as `ConnectInfo<SocketAddr>`, and a
//!   [`ConnectionCloser`] that cuts its connection: a long-lived response whose client
//!   stopped reading (a stalled event stream) ends no other way.
//! - **Upgrades are served**: a WebSocket takes the socket (and its slot of the cap) over
//!   from hyper, and lives outside the drain; realtime sessions end themselves at
//!   shutdown.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, Response},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Config;

/// The pause after an accept error that is not the client's (out of descriptors, of
/// memory): long enough not to spin while the condition lasts, short enough to resume
/// promptly once descriptors are freed.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// How often, at most, reaching the connection cap is logged.
const CAP_WARNING_PERIOD: Duration = Duration::from_secs(60);

/// Descriptors kept out of the connection cap for everything else the process opens: the
/// operator's pool, log files, key files, the runtime's own (the request pool is added).
const RESERVED_DESCRIPTORS: u64 = 128;

/// The listen backlog: connections the kernel completes and holds while the server is at
/// its connection cap or busy (Linux caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 1024;

/// What a connection may take, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's head must be complete this long after the connection was accepted
    /// (first request) or after its first byte (later requests).
    pub header_read_timeout: Duration,
    /// A keep-alive connection waiting this long for its next request is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; past it, newcomers wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for connections to finish before dropping them.
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// The configured limits, with the connection cap lowered to fit `descriptors` (the
    /// process's limit on open descriptors, if known) less what the process needs
    /// besides connections.
    pub fn from_config(config: &Config, descriptors: Option<u64>) -> Self {
        let reserved = RESERVED_DESCRIPTORS + u64::from(config.database_max_connections);
        Self {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: descriptors.map_or(config.max_connections, |descriptors| {
                fit_connection_cap(config.max_connections, descriptors, reserved)
            }),
            shutdown_timeout: config.shutdown_timeout,
        }
    }
}

/// The largest cap not above `configured` that leaves `reserved` of `descriptors` free
/// (half of them when there are fewer than that; at least one connection).
pub fn fit_connection_cap(configured: usize, descriptors: u64, reserved: u64) -> usize {
    let available = if descriptors > reserved {
        descriptors - reserved
    } else {
        descriptors / 2
    };
    configured
        .min(usize::try_from(available).unwrap_or(usize::MAX))
        .max(1)
}

/// Raises this process's soft limit on open descriptors to its hard limit (each
/// connection holds one) and returns the limit now in force; `None` where there is none
/// or it cannot be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(error) => {
                tracing::warn!(%error, "could not raise the limit on open descriptors");
                rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Binds `address` with a listen backlog of [`LISTEN_BACKLOG`].
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server can bind while old connections of
    // its predecessor linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `signal` completes, then shuts down gracefully
/// within `limits.shutdown_timeout` and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    signal: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Tells every connection to finish its in-flight request and close.
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    // Off: the deadlines are ours (see the module documentation). Without a timer hyper
    // would not apply it anyway; saying so keeps it that way if a timer is ever added.
    http.header_read_timeout(None);
    let mut last_cap_warning: Option<Instant> = None;
    tokio::pin!(signal);

    loop {
        if slots.available_permits() == 0
            && last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_PERIOD)
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait in the listen backlog until one closes"
            );
            last_cap_warning = Some(Instant::now());
        }
        let slot = tokio::select! {
            biased;
            () = &mut signal => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => {
                    // This one connection failed (reset while queued); the next is fine.
                    tracing::debug!(%error, "a connection failed before it was accepted");
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, retry_in = ?ACCEPT_RETRY, "accepting a connection failed");
                    tokio::select! {
                        biased;
                        () = &mut signal => break,
                        () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                    }
                }
            },
        };

        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(WatchedStream {
            stream,
            activity: Arc::clone(&activity),
            _slot: slot,
        });
        let close = CancellationToken::new();
        let service = ConnectionService {
            router: router.clone(),
            peer,
            activity: Arc::clone(&activity),
            close: close.clone(),
        };
        // With upgrades: a WebSocket takes the socket (and its slot) over from hyper.
        let connection = http.serve_connection(io, service).with_upgrades();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(error) = served {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    () = activity.expired(limits) => {
                        tracing::debug!("closing a connection that exceeded its header or idle timeout");
                        break;
                    }
                    () = close.cancelled() => {
                        tracing::debug!("cutting a connection whose stream stopped reading");
                        break;
                    }
                    _ = stopping.changed(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
        while let Some(ended) = connections.try_join_next() {
            log_panic(ended);
        }
    }

    // Refuse new connections from now on.
    drop(listener);
    // Open sockets hold slots; `connections` may still count tasks that ended unreaped.
    let open = |slots: &Semaphore| limits.max_connections - slots.available_permits();
    tracing::info!(
        connections = open(&slots),
        deadline = ?limits.shutdown_timeout,
        "closing connections once their in-flight requests are answered"
    );
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while let Some(ended) = connections.join_next().await {
            log_panic(ended);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = open(&slots),
            "shutdown deadline passed; dropping the connections still open"
        );
        connections.shutdown().await;
    }
}

/// Errors of one connection that failed while queued, not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(%error, "a connection task panicked");
    }
}

/// Where one connection stands, for its deadlines. Updated by the socket (bytes moved),
/// the service (a request began) and the response body (it ended); read by
/// [`Activity::expired`], which nothing needs to wake.
struct Activity {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests whose responses have not ended. hyper serves one at a time; a count makes
    /// the order of one response's end and the next request's start not matter.
    in_flight: usize,
    /// No request has begun yet.
    first: bool,
    /// The next request's first bytes have arrived.
    head_started: bool,
    /// When the clock of the current wait started: the accept (first request), the last
    /// byte of the previous response written, or the next request's first byte.
    since: Instant,
}

impl State {
    /// When the connection is to be closed, if nothing happens; `None` while serving.
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        if self.in_flight > 0 {
            None
        } else if self.first || self.head_started {
            Some(self.since + limits.header_read_timeout)
        } else {
            Some(self.since + limits.idle_timeout)
        }
    }
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                first: true,
                head_started: false,
                since: accepted,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data, valid whatever a panicking holder was doing.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived. Between requests they start the next request's head, whose header
    /// timeout then runs from here (the first request's runs from the accept).
    fn read(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && !state.head_started {
            state.head_started = true;
            if !state.first {
                state.since = Instant::now();
            }
        }
    }

    /// Bytes left. Between requests they are the end of the last response still being
    /// flushed to a slow reader: the connection is not idle yet.
    fn wrote(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && !state.head_started && !state.first {
            state.since = Instant::now();
        }
    }

    /// A request's head was parsed: no deadline of ours applies until its response ends.
    fn request_started(&self) {
        let mut state = self.state();
        state.in_flight += 1;
        state.first = false;
        state.head_started = false;
    }

    /// A response's body was written (or dropped): the idle clock starts.
    fn response_ended(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.head_started = false;
            state.since = Instant::now();
        }
    }

    /// Completes once the connection has passed its deadline.
    ///
    /// It looks at the deadline when it falls due and at least every
    /// `min(header_read_timeout, idle_timeout)`. Every deadline lies at least that long
    /// after the event that sets it (an accept, a first byte, a response's end), so each is
    /// seen on time, and neither the socket nor the service has to wake this per request.
    async fn expired(&self, limits: Limits) {
        let check_every = limits.header_read_timeout.min(limits.idle_timeout);
        loop {
            let now = Instant::now();
            let deadline = self.state().deadline(limits);
            match deadline {
                Some(deadline) if deadline <= now => return,
                deadline => {
                    let next_check = now + check_every;
                    let wake = deadline.map_or(next_check, |deadline| deadline.min(next_check));
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
    }
}

/// The accepted socket, reporting the bytes it moves to the connection's [`Activity`],
/// and holding the connection's slot of the cap until it is closed.
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router as hyper calls it on one connection: the peer's address added to each
/// request, and the request's start and its response's end reported to the [`Activity`].
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    close: CancellationToken,
}

/// In every request's extensions: cancelling it cuts the request's connection at once. For
/// a long-lived response whose client stopped reading (a stalled event stream), which no
/// timeout of a request in flight would end.
#[derive(Clone)]
pub struct ConnectionCloser(pub CancellationToken);

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let ended = ResponseEnded(Arc::clone(&self.activity));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        request
            .extensions_mut()
            .insert(ConnectionCloser(self.close.clone()));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|body| ResponseBody {
                body,
                _ended: ended,
            }))
        })
    }
}

/// Reports the end of a response when dropped: hyper drops the body once it has written
/// it, or when the connection goes (so a request whose response never came still ends).
struct ResponseEnded(Arc<Activity>);

impl Drop for ResponseEnded {
    fn drop(&mut self) {
        self.0.response_ended();
    }
}

/// A response body that reports its end to the connection's [`Activity`].
struct ResponseBody {
    body: Body,
    _ended: ResponseEnded,
}

impl http_body::Body for ResponseBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        max_connections: 10,
        shutdown_timeout: Duration::from_secs(30),
    };

    #[test]
    fn the_connection_cap_leaves_room_for_the_other_descriptors() {
        assert_eq!(fit_connection_cap(10_000, 1_048_576, 148), 10_000);
        assert_eq!(fit_connection_cap(10_000, 1024, 148), 876);
        assert_eq!(fit_connection_cap(10_000, 100, 148), 50);
        assert_eq!(fit_connection_cap(10_000, 1, 148), 1);
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_from_its_accept_even_once_bytes_arrive() {
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        assert_eq!(
            activity.state().deadline(LIMITS),
            Some(accepted + LIMITS.header_read_timeout)
        );
        activity.read();
        assert_eq!(
            activity.state().deadline(LIMITS),
            Some(accepted + LIMITS.header_read_timeout),
            "trickling the first request's head does not restart its clock"
        );
    }

    #[test]
    fn a_request_being_served_has_no_deadline_and_its_end_starts_the_idle_clock() {
        let activity = Activity::new(Instant::now());
        activity.read();
        activity.request_started();
        activity.read(); // the body
        assert_eq!(activity.state().deadline(LIMITS), None);

        activity.response_ended();
        let idle = activity.state();
        assert_eq!(
            idle.deadline(LIMITS),
            Some(idle.since + LIMITS.idle_timeout),
            "between requests the idle timeout applies, not the header timeout"
        );
    }

    #[test]
    fn the_next_request_has_the_header_timeout_from_its_first_byte() {
        let activity = Activity::new(Instant::now());
        activity.request_started();
        activity.response_ended();
        let ended = activity.state().since;
        activity.read();
        let reading = activity.state();
        assert!(reading.since >= ended);
        assert_eq!(
            reading.deadline(LIMITS),
            Some(reading.since + LIMITS.header_read_timeout)
        );
    }

    #[test]
    fn a_response_ending_after_the_next_request_began_does_not_start_the_idle_clock() {
        let activity = Activity::new(Instant::now());
        activity.request_started();
        activity.request_started();
        activity.response_ended();
        assert_eq!(activity.state().deadline(LIMITS), None);
    }
}
