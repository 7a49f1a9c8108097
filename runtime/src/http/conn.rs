//! The work of [`serve`](super::serve): the accept loop and one task per connection, each a
//! service of the server's scope, and what happens to a connection at that scope's turn.
//!
//! hyper's own graceful shutdown closes a connection whose first request it has not read yet,
//! and an idle kept-alive connection at once, so a client that sends its next request just then
//! sees the connection close under it. Here an HTTP/1 connection is instead served until its next
//! response, which says `Connection: close` (hyper closes the connection after writing it), and
//! closed only once it has stayed idle for `idle_close`. An HTTP/2 connection gets hyper's
//! GOAWAY, which lets the streams in flight finish and tells the client which were not.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::Location;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response, Version};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::runtime::Runtime;
use crate::scope::tree::ScopeInner;
use crate::task::TaskKind;

/// The error type services and bodies may fail with.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The services `serve` runs, as its signature spells them out: written once here for the
/// functions behind it.
pub(crate) trait HttpService<B>:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
}

/// The response bodies `serve` writes.
pub(crate) trait ResponseBody:
    Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
}

/// How long the accept loop pauses after an error that may pass (no descriptor left, no memory).
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// A listener [`serve`](super::serve) accepts connections from: a [`tokio::net::TcpListener`],
/// or a [`tokio::net::UnixListener`] on Unix.
///
/// Typically from [`listen_tcp`](crate::listen_tcp), which a restart without downtime hands over
/// to the new process. This trait is sealed.
pub trait Listener: sealed::Sealed + Send + 'static {
    #[doc(hidden)]
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    #[doc(hidden)]
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, PeerAddr)>>;
}

mod sealed {
    pub trait Sealed {}
}

/// The address of the client a request came from: an extension of every request
/// [`serve`](super::serve) hands to the service.
///
/// # Examples
///
/// With axum, as an `Extension`, where `axum::serve` offers `ConnectInfo`:
///
/// ```
/// # use graceful_runtime as graceful;
/// use axum::{routing::get, Extension, Router};
/// use graceful::http::PeerAddr;
///
/// async fn hello(Extension(peer): Extension<PeerAddr>) -> String {
///     match peer {
///         PeerAddr::Tcp(address) => format!("hello, {}", address.ip()),
///         _ => "hello".to_string(),
///     }
/// }
///
/// let app: Router = Router::new().route("/", get(hello));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP client's address.
    Tcp(std::net::SocketAddr),
    /// A Unix socket client's address (usually unnamed).
    #[cfg(unix)]
    Unix(tokio::net::unix::SocketAddr),
}

impl sealed::Sealed for tokio::net::TcpListener {}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, PeerAddr)>> {
        tokio::net::TcpListener::poll_accept(self, cx).map_ok(|(stream, address)| {
            // As `axum::serve` does: a response written in two parts must not wait for an ACK.
            let _ = stream.set_nodelay(true);
            (stream, PeerAddr::Tcp(address))
        })
    }
}

#[cfg(unix)]
impl sealed::Sealed for tokio::net::UnixListener {}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, PeerAddr)>> {
        tokio::net::UnixListener::poll_accept(self, cx)
            .map_ok(|(stream, address)| (stream, PeerAddr::Unix(address)))
    }
}

/// One server: its scope, where its connections are spawned from, and how long an idle
/// connection is kept once the scope's turn has come.
pub(crate) struct Server {
    /// Its connections with a request in flight, for the report.
    pub(crate) busy: Arc<AtomicUsize>,
    pub(crate) scope: Arc<ScopeInner>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) idle_close: Duration,
}

/// Runs `f` with the runtime of this thread: the server's work runs on the runtime's threads.
fn in_runtime<R>(f: impl FnOnce(&Arc<Runtime>) -> R) -> R {
    crate::context::with_expect("graceful::http::serve", f)
}

/// The accept loop, the server scope's service: accepts until the scope's turn, then stops, so
/// that connections still queued on the socket are left for another process to accept.
pub(crate) async fn accept<L, S, B>(
    mut listener: L,
    service: S,
    server: Arc<Server>,
) -> io::Result<()>
where
    L: Listener,
    S: HttpService<B>,
    B: ResponseBody,
{
    let turn = server.scope.token.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = turn.cancelled() => return Ok(()),
            accepted = poll_fn(|cx| listener.poll_accept(cx)) => accepted,
        };
        match accepted {
            Ok((io, peer)) => {
                let connection = connection(io, peer, service.clone(), server.clone());
                in_runtime(|runtime| {
                    crate::spawn::service_in(
                        runtime,
                        Some(&server.scope),
                        Cow::Borrowed("connection"),
                        server.location,
                        connection,
                    )
                });
            }
            // The client gave up, or its connection failed, before we accepted it.
            Err(err) if is_connection_error(&err) => {}
            Err(err) if listener_failed(&err) => return Err(err),
            Err(err) => {
                tracing::debug!(target: "graceful", error = %err, "accept failed; retrying in 1s");
                tokio::select! {
                    _ = turn.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(ACCEPT_PAUSE) => {}
                }
            }
        }
    }
}

/// An error of the connection being accepted, not of the listener. Linux's `accept` also passes
/// on a network error pending on the new connection.
fn is_connection_error(err: &io::Error) -> bool {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let Some(code) = err.raw_os_error() {
        return matches!(
            code,
            libc::ENETDOWN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        );
    }
    false
}

/// The listener itself is unusable: every accept would fail the same way. Anything else (no
/// descriptor left, no memory) may pass, and the next accept is tried after a pause.
fn listener_failed(err: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = err.raw_os_error() {
        return matches!(code, libc::EBADF | libc::EINVAL | libc::ENOTSOCK);
    }
    err.kind() == io::ErrorKind::InvalidInput
}

impl Server {
    /// A server of `scope`, which the report then names by its connections.
    pub(crate) fn new(
        scope: Arc<ScopeInner>,
        location: &'static Location<'static>,
        idle_close: Duration,
    ) -> Arc<Server> {
        let busy = Arc::new(AtomicUsize::new(0));
        in_runtime(|runtime| runtime.reporter().servers.add(&scope.path, &busy));
        Arc::new(Server {
            busy,
            scope,
            location,
            idle_close,
        })
    }
}

/// What the connection's task and the requests on it share.
struct Connection {
    server: Arc<Server>,
    /// Requests whose response (head and body) has not been written out yet.
    in_flight: AtomicUsize,
    /// A request came over HTTP/2.
    http2: AtomicBool,
    /// A request started or ended.
    activity: Notify,
}

/// One connection, as long as its client keeps it, or until the server's turn ends it.
async fn connection<I, S, B>(io: I, peer: PeerAddr, service: S, server: Arc<Server>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    let state = Arc::new(Connection {
        server: server.clone(),
        in_flight: AtomicUsize::new(0),
        http2: AtomicBool::new(false),
        activity: Notify::new(),
    });
    let shared = state.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        let http2 = request.version() == Version::HTTP_2;
        if http2 {
            shared.http2.store(true, Ordering::SeqCst);
        }
        let in_flight = InFlight::new(shared.clone());
        let mut service = service.clone();
        async move {
            if let Err(err) = poll_fn(|cx| service.poll_ready(cx)).await {
                return Err(ServiceError(err.into()));
            }
            let mut response: Response<B> = match service.call(request).await {
                Ok(response) => response,
                Err(err) => return Err(ServiceError(err.into())),
            };
            // A switch of protocols (a WebSocket's 101) keeps its `Connection: upgrade`.
            let switching = response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS;
            if !http2 && !switching && in_flight.0.server.scope.token.is_cancelled() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Counted {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let mut builder = auto::Builder::new(Streams(server.clone()));
    // As `axum::serve`: WebSockets over HTTP/2 open with an extended CONNECT.
    builder.http2().enable_connect_protocol();
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    let turn = server.scope.token.clone();
    tokio::select! {
        ended = connection.as_mut() => return said(ended),
        _ = turn.cancelled() => {}
    }
    loop {
        if state.http2.load(Ordering::SeqCst) {
            // GOAWAY: the streams in flight finish, the client opens no new one here.
            connection.as_mut().graceful_shutdown();
            return said(connection.await);
        }
        let activity = state.activity.notified();
        if state.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                ended = connection.as_mut() => return said(ended),
                _ = activity => {}
            }
            continue;
        }
        // Idle: a request that comes within `idle_close` is served, with `Connection: close`.
        tokio::select! {
            ended = connection.as_mut() => return said(ended),
            _ = activity => {}
            _ = tokio::time::sleep(server.idle_close) => {
                if state.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
            }
        }
    }
    // Idle for `idle_close`: hyper closes the connection once what it is writing is out (a body
    // it has taken whole is not yet on the wire), and an HTTP/2 connection whose first stream has
    // not come gets its GOAWAY.
    connection.as_mut().graceful_shutdown();
    said(connection.await)
}

/// The service's error, as hyper takes it (a type of our own: with a boxed `dyn Error` the
/// compiler cannot prove the connection's future `Send`).
#[derive(Debug)]
struct ServiceError(BoxError);

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for ServiceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// How a connection ended, for those who ask `tracing`: a client that goes away mid-request is
/// no failure of the server's.
fn said(ended: Result<(), BoxError>) {
    if let Err(err) = ended {
        tracing::debug!(target: "graceful", error = %err, "connection ended with an error");
    }
}

/// One request in flight on a connection, from its head to the end of its response's body.
struct InFlight(Arc<Connection>);

impl InFlight {
    fn new(connection: Arc<Connection>) -> InFlight {
        if connection.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            connection.server.busy.fetch_add(1, Ordering::SeqCst);
        }
        if connection.server.scope.token.is_cancelled() {
            connection.activity.notify_one();
        }
        InFlight(connection)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.server.busy.fetch_sub(1, Ordering::SeqCst);
        }
        if self.0.server.scope.token.is_cancelled() {
            self.0.activity.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its request in flight until hyper drops it, written out.
    struct Counted<B> {
        #[pin]
        body: B,
        _in_flight: InFlight,
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Runs HTTP/2 streams as the server scope's work, so their handlers run in it as HTTP/1's do.
#[derive(Clone)]
struct Streams(Arc<Server>);

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let server = &self.0;
        in_runtime(|runtime| {
            crate::tracked::spawn_in(
                runtime,
                &server.scope,
                TaskKind::Protected,
                server.location,
                stream,
            )
        });
    }
}
