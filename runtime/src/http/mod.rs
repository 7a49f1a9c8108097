//! HTTP serving that loses no request at a shutdown or a restart without downtime.
//!
//! [`serve`] is `axum::serve` with the shutdown built in: it takes the same listener and the
//! same service (an `axum::Router`, or any tower service), serves HTTP/1.1 and HTTP/2 without TLS
//! (h2c) on one listener, and at its turn in a shutdown stops accepting and lets every connection
//! finish what it has started, without closing one under a request its client is sending.
//! A connection upgraded to another protocol (a WebSocket) leaves hyper and the server when it
//! switches: its work is the program's to track (see `examples/websocket.rs`).

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};

mod conn;

use conn::{BoxError, HttpService, ResponseBody, Server};
pub use conn::{Listener, PeerAddr};

/// How long a connection may stay idle once the server's turn has come, unless set.
const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// Serves HTTP on `listener` with `service` until the shutdown, and loses no request at it.
///
/// `service` is what `axum::serve` takes: an `axum::Router`, or any
/// `tower_service::Service<http::Request<hyper::body::Incoming>>` that is `Clone + Send +
/// 'static`. Each request carries the client's address as a [`PeerAddr`] extension.
///
/// The server is a scope of its own, named `http` (or [`name`](Serve::name)), a child of the
/// caller's current scope that [depends on](crate::Scope::depends_on) it, as work that uses the
/// caller's does: in a shutdown it takes its turn first, and the caller's own work (`main`, its services, the workers
/// the handlers call) drains after it. Handlers run in that scope: `graceful::spawn` in a handler
/// spawns into it, and `graceful::shutdown_requested()` there is its turn.
///
/// At its turn, it stops accepting (connections still queued are left for the next process of an
/// upgrade), and then:
/// - every HTTP/1 connection is served until its next response, which says `Connection: close`,
///   so its client opens a new connection for the request after it;
/// - a connection whose first request has not arrived yet is given it, and an idle kept-alive one
///   is kept for a request its client may be sending, each for
///   [`idle_close`](Serve::idle_close) (1 s unless set), and then closed;
/// - every HTTP/2 connection gets a GOAWAY: its streams in flight finish, and its client opens no
///   new one on it;
/// - requests an HTTP/1 client pipelines behind the one answered with `Connection: close` are
///   not answered (the client sends them again on a new connection, as HTTP lets it);
/// - at the deadline, whatever is left is aborted, as all work is.
///
/// The future resolves once the server's scope has finished, so `serve(..).await` in `main`
/// drains and returns. It resolves to an error only if the listener itself fails; a failed
/// accept that may pass (no descriptor left) is retried after a pause, and a client that goes
/// away mid-request is a `debug` event, never an error of the server's.
///
/// Each connection is tracked work of kind `Service` named `connection` in the server's scope,
/// and listed as such by [`tasks()`](crate::tasks) and in the report.
///
/// For a restart without downtime, take the listener from [`listen_tcp`](crate::listen_tcp),
/// which the new process inherits; a listener from `TcpListener::bind` works, but is not handed
/// over. There is no TLS: terminate it in front (a load balancer, a proxy).
///
/// # Examples
///
/// A server that answers one request, from a client of its own, and then stops the program:
///
/// ```
/// # use graceful_runtime as graceful;
/// use axum::{routing::get, Router};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let exit = graceful::Builder::new().signals([]).run(async {
///     let listener = graceful::listen_tcp("127.0.0.1:0").await?;
///     let address = listener.local_addr()?;
///     graceful::spawn(async move {
///         let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
///         let request = b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n";
///         client.write_all(request).await.unwrap();
///         let mut response = String::new();
///         client.read_to_string(&mut response).await.unwrap();
///         assert!(response.ends_with("hello"), "{response}");
///         graceful::shutdown();
///     });
///     let app = Router::new().route("/", get(|| async { "hello" }));
///     // Returns once the shutdown has drained the server.
///     graceful::http::serve(listener, app).await
/// });
/// assert_eq!(exit.code(), 0);
/// ```
///
/// # Panics
///
/// When awaited outside a graceful runtime.
#[track_caller]
pub fn serve<L, S, B>(listener: L, service: S) -> Serve<L, S>
where
    L: Listener,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Serve {
        settings: Some(Settings {
            listener,
            service,
            idle_close: IDLE_CLOSE,
            name: Cow::Borrowed("http"),
            location: Location::caller(),
        }),
        running: None,
    }
}

/// The future [`serve`] returns: serves until the server's turn in the shutdown has ended.
#[must_use = "futures do nothing unless polled"]
pub struct Serve<L, S> {
    settings: Option<Settings<L, S>>,
    running: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send>>>,
}

struct Settings<L, S> {
    listener: L,
    service: S,
    idle_close: Duration,
    name: Cow<'static, str>,
    location: &'static Location<'static>,
}

impl<L, S> Serve<L, S> {
    /// Sets how long a connection may stay idle once the server's turn has come (default 1 s).
    ///
    /// A kept-alive connection idle that long is closed; a request its client sends before then
    /// is served, with `Connection: close`. It never outlasts the deadline.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    /// use axum::{routing::get, Router};
    ///
    /// # async fn f() -> std::io::Result<()> {
    /// let listener = graceful::listen_tcp("127.0.0.1:3000").await?;
    /// let app = Router::new().route("/", get(|| async { "hello" }));
    /// graceful::http::serve(listener, app)
    ///     .idle_close(Duration::from_millis(300))
    ///     .await
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `idle_close` is zero, or once the future has been polled.
    #[track_caller]
    pub fn idle_close(mut self, idle_close: Duration) -> Serve<L, S> {
        assert!(
            !idle_close.is_zero(),
            "graceful::http::Serve: `idle_close` must be more than zero"
        );
        self.settings_mut().idle_close = idle_close;
        self
    }

    /// Names the server's scope (default `http`): two servers in one program each get a name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use graceful_runtime as graceful;
    /// use axum::{routing::get, Router};
    ///
    /// # async fn f() -> std::io::Result<()> {
    /// let admin = graceful::listen_tcp("127.0.0.1:9000").await?;
    /// let app = Router::new().route("/metrics", get(|| async { "up 1\n" }));
    /// graceful::http::serve(admin, app).name("admin").await
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `name` contains `/`, or once the future has been polled.
    #[track_caller]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Serve<L, S> {
        let name = name.into();
        crate::scope::check_name(&name);
        self.settings_mut().name = name;
        self
    }

    #[track_caller]
    fn settings_mut(&mut self) -> &mut Settings<L, S> {
        self.settings
            .as_mut()
            .expect("graceful::http::Serve: set before the future is polled")
    }
}

impl<L, S, B> Future for Serve<L, S>
where
    L: Listener,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(settings) = self.settings.take() {
            self.running = Some(Box::pin(run(settings)));
        }
        let running = self
            .running
            .as_mut()
            .expect("graceful::http::Serve polled after it completed");
        let done = running.as_mut().poll(cx);
        if done.is_ready() {
            self.running = None;
        }
        done
    }
}

/// `Serve` holds no self-references: the running future is boxed.
impl<L, S> Unpin for Serve<L, S> {}

impl<L, S> std::fmt::Debug for Serve<L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Serve");
        if let Some(settings) = &self.settings {
            debug
                .field("name", &settings.name)
                .field("idle_close", &settings.idle_close);
        }
        debug.field("running", &self.running.is_some()).finish()
    }
}

/// The server's scope, its accept loop as that scope's service, and the wait for the scope.
async fn run<L, S, B>(settings: Settings<L, S>) -> io::Result<()>
where
    L: Listener,
    S: HttpService<B>,
    B: ResponseBody,
{
    let caller = crate::current_scope();
    let scope = caller.scope(settings.name).depends_on(&caller);
    let server = Server::new(scope.inner.clone(), settings.location, settings.idle_close);
    let (listener, service) = (settings.listener, settings.service);
    // The accept loop's error is the caller's to handle, not a failed service of the program.
    let (failed, error) = tokio::sync::oneshot::channel();
    let accepting = scope.spawn_service("accept", async move {
        if let Err(err) = conn::accept(listener, service, server).await {
            let _ = failed.send(err);
        }
    });
    // Dropped before the end (a `select!` that chose another branch), the server stops.
    let mut stop = StopOnDrop(Some(scope.clone()));
    let joined = accepting.await;
    let accepted = match (error.await, joined) {
        (Ok(err), _) => Err(err),
        // Its panic is reported as any tracked work's is; the caller hears of it as an error.
        (Err(_), Err(joined)) if joined.is_panic() => {
            Err(io::Error::other("the accept loop panicked"))
        }
        (Err(_), _) => Ok(()),
    };
    if accepted.is_err() {
        drop(scope.shutdown());
    }
    scope.finished().await;
    stop.0 = None;
    accepted
}

/// Starts the server scope's own shutdown when dropped.
struct StopOnDrop(Option<crate::Scope>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(scope) = self.0.take() {
            drop(scope.shutdown());
        }
    }
}
