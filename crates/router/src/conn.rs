//! Accepting connections so that a silent, slow or numerous peer cannot hold the router.
//!
//! axum's own `serve` has no header-read or idle timeout and no connection cap, so the router
//! runs its own accept loop over hyper's HTTP/1 connection driver:
//!
//! * every connection is counted, in total and per source IP address, from accept until its
//!   socket closes (also after a WebSocket upgrade, where the socket outlives the HTTP
//!   exchange); a connection over the per-source cap is answered 429 `too_many_connections`;
//! * at the total cap, the connection that has waited longest without a request in progress
//!   is let go for the new one, so idle connections cannot starve `/healthz` or a launch; if
//!   every connection is busy, the new one is answered 503 `overloaded`;
//! * a watchdog per connection closes it when its request head is not complete within
//!   `header_read_timeout` (answering 408 `header_timeout` where a request had begun), or when
//!   a kept-alive connection has had no request for `idle_timeout`.
//!
//! With TLS, the handshake runs under the same watchdog: it is part of the request head's time.
//! A connection refused at accept is answered after a handshake (bounded in time), a request
//! head that times out is answered through TLS, and a handshake that does not finish in time
//! or fails is closed without an answer (there is no channel to answer on).
//!
//! Request bodies have their own idle timeout in the handler that reads them.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sallyport_protocol::{Code, ErrorBody};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Shared;

/// File descriptors kept free beside the connections (listener, runtime, logs, refusals).
const DESCRIPTOR_RESERVE: u64 = 64;
/// Largest request head (request line and headers) the router reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Refusals being written at once; past this a refused connection is closed without one, so
/// a flood of refused connections cannot hold descriptors either.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// The connection limits in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_total: usize,
    pub max_per_source: usize,
}

impl Limits {
    pub fn from_config(config: &crate::RouterConfig) -> Self {
        let mut max_total = config.max_connections;
        if let Some(fds) = descriptor_limit() {
            let room = fds.saturating_sub(DESCRIPTOR_RESERVE).max(16) as usize;
            if room < max_total {
                tracing::info!(
                    configured = max_total,
                    open_file_limit = fds,
                    using = room,
                    "max_connections lowered to fit the open-file limit"
                );
                max_total = room;
            }
        }
        Self {
            header_read: Duration::from_secs(config.header_read_timeout_secs),
            idle: Duration::from_secs(config.idle_timeout_secs),
            max_total,
            max_per_source: config.max_connections_per_source,
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), if the platform has one.
pub fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Raise the soft open-file limit to the hard one (as Go and many servers do at start), so the
/// connection cap is not needlessly low. Returns the limit now in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
    descriptor_limit()
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    PerSource(usize),
    Total(usize),
}

impl Refusal {
    fn response(self) -> (StatusCode, ErrorBody) {
        match self {
            Refusal::PerSource(cap) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody {
                    code: Code::TooManyConnections,
                    message: format!(
                        "too many connections from your address (at most {cap} at once)"
                    ),
                },
            ),
            Refusal::Total(cap) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody {
                    code: Code::Overloaded,
                    message: format!("the router holds its limit of {cap} busy connections"),
                },
            ),
        }
    }
}

/// One connection's progress, shared by its socket wrapper, its service and its watchdog.
pub(crate) struct ConnState {
    source: IpAddr,
    accepted: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    upgraded: AtomicBool,
    /// Milliseconds after `accepted` when the last response was handed to hyper.
    last_end_ms: AtomicU64,
    /// 1 + milliseconds after `accepted` of the first byte read since then (0: none yet).
    head_started_ms: AtomicU64,
    /// Taken out of the counts by an eviction: its slot must not be released twice.
    released: AtomicBool,
    /// A started request head timed out: answer 408 when the socket closes.
    head_timed_out: AtomicBool,
    changed: Notify,
    evict: Notify,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    /// Waiting for a request head (the first, or the next on a kept-alive connection).
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.upgraded.load(Ordering::Acquire)
    }

    /// Since when it has been waiting for a request.
    fn waiting_since(&self) -> u64 {
        self.last_end_ms.load(Ordering::Relaxed)
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Relaxed);
        self.changed.notify_one();
        RequestGuard {
            state: self.clone(),
            upgraded: false,
        }
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// When the watchdog must act next, and why; `None` while a request is in progress.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        if !self.idle() {
            return None;
        }
        let head_started = self.head_started_ms.load(Ordering::Relaxed);
        if self.requests.load(Ordering::Relaxed) == 0 {
            Some((self.accepted + limits.header_read, Expiry::Head))
        } else if head_started > 0 {
            Some((self.at(head_started - 1) + limits.header_read, Expiry::Head))
        } else {
            Some((self.at(self.waiting_since()) + limits.idle, Expiry::Idle))
        }
    }
}

/// Marks a request in progress until its response is handed over (or the request is dropped).
struct RequestGuard {
    state: Arc<ConnState>,
    upgraded: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let state = &self.state;
        if self.upgraded {
            state.upgraded.store(true, Ordering::Release);
        }
        state.last_end_ms.store(state.now_ms(), Ordering::Relaxed);
        state.head_started_ms.store(0, Ordering::Relaxed);
        state.requests.fetch_add(1, Ordering::Relaxed);
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        state.changed.notify_one();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// The request head did not arrive in time.
    Head,
    /// A kept-alive connection had no request.
    Idle,
}

/// Every open connection, for the caps and for eviction.
#[derive(Default)]
pub(crate) struct Connections {
    table: Mutex<Table>,
    refusing: AtomicUsize,
}

#[derive(Default)]
struct Table {
    next: u64,
    per_source: HashMap<IpAddr, usize>,
    live: HashMap<u64, Arc<ConnState>>,
}

impl Table {
    fn release(&mut self, id: u64, source: IpAddr) {
        self.live.remove(&id);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

impl Connections {
    pub fn open(&self) -> usize {
        self.table.lock().unwrap().live.len()
    }

    /// Count a new connection from `source`, letting the longest-idle one go at the cap.
    fn admit(self: &Arc<Self>, source: IpAddr, limits: &Limits) -> Result<Slot, Refusal> {
        let mut table = self.table.lock().unwrap();
        if table.per_source.get(&source).copied().unwrap_or(0) >= limits.max_per_source {
            return Err(Refusal::PerSource(limits.max_per_source));
        }
        if table.live.len() >= limits.max_total {
            let victim = table
                .live
                .iter()
                .filter(|(_, c)| c.idle())
                .min_by_key(|(_, c)| c.accepted + Duration::from_millis(c.waiting_since()))
                .map(|(id, c)| (*id, c.clone()));
            let Some((id, victim)) = victim else {
                return Err(Refusal::Total(limits.max_total));
            };
            table.release(id, victim.source);
            victim.released.store(true, Ordering::Release);
            victim.evict.notify_one();
        }
        let id = table.next;
        table.next += 1;
        let state = Arc::new(ConnState {
            source,
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            released: AtomicBool::new(false),
            head_timed_out: AtomicBool::new(false),
            changed: Notify::new(),
            evict: Notify::new(),
        });
        table.live.insert(id, state.clone());
        *table.per_source.entry(source).or_default() += 1;
        Ok(Slot {
            connections: self.clone(),
            id,
            state,
        })
    }
}

/// A counted connection; uncounted when dropped, which is when its socket closes.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.state.released.swap(true, Ordering::AcqRel) {
            self.connections
                .table
                .lock()
                .unwrap()
                .release(self.id, self.state.source);
        }
    }
}

/// A connection's byte stream: the socket itself, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Write a whole response without waiting (best effort), then close: for answers given
    /// while the connection is being dropped.
    fn write_now(self, response: &[u8]) {
        match self {
            Stream::Plain(stream) => {
                let _ = stream.try_write(response);
            }
            Stream::Tls(mut tls) => {
                use std::io::Write;
                let (socket, session) = tls.get_mut();
                let _ = session.writer().write_all(response);
                session.send_close_notify();
                let mut socket = NoWait(socket);
                while session.wants_write() {
                    if session.write_tls(&mut socket).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// A socket written only as far as it takes bytes without waiting.
struct NoWait<'a>(&'a TcpStream);

impl std::io::Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! delegate {
    ($self:ident, $stream:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Plain($stream) => {
                let $stream = Pin::new($stream);
                $call
            }
            Stream::Tls($stream) => {
                let $stream = Pin::new($stream.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The connection's stream, noting reads for the watchdog and carrying the connection's slot,
/// so that a WebSocket stays counted after the upgrade hands the stream over.
struct Tracked {
    /// Taken out when the connection ends, for the lingering close.
    stream: Option<Stream>,
    slot: Slot,
}

impl Tracked {
    fn stream(&mut self) -> Pin<&mut Stream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is only taken on drop"),
        )
    }
}

/// After an answer that left part of a request unread (a 413 for a declared length, a 401
/// before the body), closing at once would make the kernel reset the connection when the rest
/// arrives, and a reset throws away the answer before the client reads it. So the socket is
/// half-closed and drained for a moment (bounded in time, bytes and number of sockets).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;
const MAX_LINGERING: usize = 256;
static LINGERING: AtomicUsize = AtomicUsize::new(0);

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if self.slot.state.head_timed_out.load(Ordering::Acquire) {
            // Best effort and non-blocking: nothing has been written on this connection yet.
            // A peer too slow to send a request head gets no lingering either.
            let (status, body) = (StatusCode::REQUEST_TIMEOUT, head_timeout_body());
            stream.write_now(&raw_response(status, &body));
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if LINGERING.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
            LINGERING.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        runtime.spawn(async move {
            linger(stream).await;
            LINGERING.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn linger(mut stream: Stream) {
    let _ = tokio::time::timeout(LINGER, stream.shutdown()).await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut buf = [0u8; 16 * 1024];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = self.stream().poll_read(cx, buf);
        if buf.filled().len() > before {
            self.slot.state.read_some();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

fn head_timeout_body() -> ErrorBody {
    ErrorBody {
        code: Code::HeaderTimeout,
        message: "no complete request head in time".into(),
    }
}

/// A whole HTTP/1.1 response that closes the connection, for answers written outside hyper.
fn raw_response(status: StatusCode, body: &ErrorBody) -> Vec<u8> {
    let json = serde_json::to_string(body).expect("error bodies serialize");
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        json.len()
    )
    .into_bytes()
}

/// Accept connections until the router shuts down, then wait for the HTTP exchanges in
/// progress (WebSockets close themselves on the same signal).
pub(crate) async fn serve(listener: TcpListener, app: axum::Router, shared: Arc<Shared>) {
    let limits = shared.limits;
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.closing() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a little rather
                // than spin; the caps keep this rare.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Signalling is small messages each way: Nagle's algorithm against delayed ACKs would
        // hold some of them back by ~40 ms.
        let _ = stream.set_nodelay(true);
        let tls = shared.tls.as_ref().map(|tls| tls.acceptor());
        match shared.connections.admit(peer.ip(), &limits) {
            Ok(slot) => {
                tasks.spawn(serve_connection(
                    stream,
                    tls,
                    slot,
                    app.clone(),
                    shared.clone(),
                    limits,
                ));
            }
            Err(refusal) => {
                shared.metrics.failure(refusal.response().1.code);
                let refusing = &shared.connections.refusing;
                if refusing.fetch_add(1, Ordering::AcqRel) < MAX_REFUSALS_IN_FLIGHT {
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        refuse(stream, tls, peer, refusal).await;
                        shared.connections.refusing.fetch_sub(1, Ordering::AcqRel);
                    });
                } else {
                    refusing.fetch_sub(1, Ordering::AcqRel);
                    drop(stream);
                }
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// Answer a refused connection and close it, without reading its request (beyond draining
/// what already arrived, so the close does not reset the answer away). With TLS, the answer
/// needs a handshake first; all of it must fit in a second.
async fn refuse(socket: TcpStream, tls: Option<TlsAcceptor>, peer: SocketAddr, refusal: Refusal) {
    tracing::debug!(%peer, ?refusal, "connection refused");
    let (status, body) = refusal.response();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut stream = match tls {
            Some(tls) => Stream::Tls(Box::new(tls.accept(socket).await?)),
            None => Stream::Plain(socket),
        };
        stream.write_all(&raw_response(status, &body)).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// The expiry's name among the failure metrics.
fn expiry_code(expiry: Option<Expiry>) -> Code {
    match expiry {
        Some(Expiry::Head) => Code::HeaderTimeout,
        Some(Expiry::Idle) => Code::IdleTimeout,
        None => Code::Evicted,
    }
}

async fn serve_connection(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    slot: Slot,
    app: axum::Router,
    shared: Arc<Shared>,
    limits: Limits,
) {
    let state = slot.state.clone();
    let stream = match tls {
        None => Stream::Plain(socket),
        // The handshake counts against the time for the first request head.
        Some(tls) => tokio::select! {
            accepted = tls.accept(socket) => match accepted {
                Ok(stream) => Stream::Tls(Box::new(stream)),
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    shared.metrics.failure(Code::TlsHandshake);
                    return;
                }
            },
            expiry = watchdog(&state, &limits) => {
                shared.metrics.failure(expiry_code(expiry));
                return;
            }
            _ = shared.closing() => return,
        },
    };
    let io = Tracked {
        stream: Some(stream),
        slot,
    };
    let source = crate::ClientAddr(state.source);
    let service = {
        let state = state.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let mut guard = state.begin();
            let app = app.clone();
            request.extensions_mut().insert(source);
            async move {
                let response: Response<Body> = app
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                guard.upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                drop(guard);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut closing = std::pin::pin!(shared.closing());
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            expiry = watchdog(&state, &limits) => {
                shared.metrics.failure(expiry_code(expiry));
                let began = state.requests.load(Ordering::Relaxed) == 0
                    || state.head_started_ms.load(Ordering::Relaxed) > 0;
                if expiry == Some(Expiry::Head) && began {
                    state.head_timed_out.store(true, Ordering::Release);
                }
                return;
            }
            _ = &mut closing, if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves when the connection must go: its request head or next request is late
/// (`Some(expiry)`), or it was let go for a newer connection (`None`).
async fn watchdog(state: &ConnState, limits: &Limits) -> Option<Expiry> {
    loop {
        let next = state.deadline(limits);
        let sleep = async {
            match next {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = state.evict.notified() => return None,
            _ = state.changed.notified() => continue,
            _ = sleep => {
                // Still the same deadline (no request came meanwhile)?
                if let Some((at, expiry)) = state.deadline(limits) {
                    if Instant::now() >= at {
                        return Some(expiry);
                    }
                }
            }
        }
    }
}
