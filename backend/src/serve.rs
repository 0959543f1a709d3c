//! Serving connections, each one bounded in number and in time.
//!
//! `axum::serve` sets none of these bounds, so connections are served here with
//! hyper-util's builder (HTTP/1 and HTTP/2) and these rules:
//!
//! - At most `max_connections` are open; further ones wait in the kernel's backlog until
//!   one closes, so a flood cannot use up the process's file descriptors.
//! - A connection that has not sent a whole request head within `header_read_timeout`
//!   after it was accepted is closed, whatever it sent: nothing, or part of an HTTP/2
//!   preface (hyper's own header timeout only starts once HTTP/1 is recognised). Later
//!   HTTP/1 request heads get the same bound from hyper itself, counted from their first
//!   byte (see [`HeadTimer`]).
//! - A connection with no request in flight for `idle_timeout` is closed gracefully.
//! - A write that makes no progress for `write_timeout` fails, which drops the response
//!   and the connection: a client that stops reading cannot hold a response forever.
//! - Accepted sockets get TCP keepalive, so a peer that vanished is noticed by the kernel.
//!
//! Each request carries its peer's address as axum's `ConnectInfo<SocketAddr>`.

use crate::api::layers::AppService;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The bounds every connection is held to (`--max-connections` and the `*-timeout-ms`
/// flags).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

/// Idle time before the kernel starts probing a silent peer, then between probes.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// HTTP/2 pings: how often on a quiet connection, and how long the answer may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after a failed accept (out of file descriptors and the like) instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts connections until `shutdown` resolves, then lets the open ones finish their
/// requests and waits for them to close.
pub async fn serve(
    listener: TcpListener,
    router: impl AppService,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        // A free slot first: while every slot is taken, new connections wait in the
        // kernel's backlog instead of taking a file descriptor here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tune(&stream);
        let builder = builder.clone();
        let router = router.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let activity = Arc::new(Activity::new());
            let mut builder = Builder::clone(&builder);
            builder.http1().timer(HeadTimer(activity.clone()));
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let request = InFlight::begin(&activity);
                    req.extensions_mut().insert(ConnectInfo(peer));
                    // `oneshot` waits for the service to be ready (the in-flight limit).
                    let handling = router.clone().oneshot(req.map(axum::body::Body::new));
                    async move {
                        let response = handling.await;
                        drop(request);
                        response
                    }
                })
            };
            let io = TokioIo::new(Socket::new(stream, activity.clone(), limits.write_timeout));
            let connection = builder.serve_connection_with_upgrades(io, service);
            watch_connection(
                connection,
                |c| c.graceful_shutdown(),
                &activity,
                limits,
                stopping,
            )
            .await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(());
    // Every connection holds a slot until it closes: all slots back means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// What a connection's watchdog needs to know: requests in flight and when the last
/// one ended. The watchdog reads it only when its timer fires (then sets the timer to the
/// deadline it finds), never per request: a wake-up per request cost the polling hot path
/// a task poll and a timer re-armed each time.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Requests begun so far.
    requests: AtomicU64,
    /// Reads that brought bytes so far.
    reads: AtomicU64,
    /// When the last request ended, in milliseconds after `accepted`.
    last_end_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    /// What to do at `now`: close the connection, or look again at the instant returned.
    fn check(&self, now: Instant, limits: &ConnectionLimits) -> Verdict {
        if self.requests.load(Ordering::SeqCst) == 0 {
            let deadline = self.accepted + limits.header_read_timeout;
            return if now >= deadline {
                Verdict::NoRequest
            } else {
                Verdict::LookAgain(deadline)
            };
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Verdict::LookAgain(now + limits.idle_timeout);
        }
        let last_end =
            self.accepted + Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
        let deadline = last_end + limits.idle_timeout;
        if now >= deadline {
            Verdict::Idle
        } else {
            Verdict::LookAgain(deadline)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// No request head arrived in time: close at once.
    NoRequest,
    /// No request in flight for the idle timeout: close gracefully.
    Idle,
    LookAgain(Instant),
}

/// One request in flight; ends when dropped (answered, or its client went away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.requests.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Drives one connection until it ends, closing it when [`Activity::check`] says so or
/// shutting it down gracefully when the server stops.
async fn watch_connection<C, E>(
    connection: C,
    shutdown_gracefully: impl Fn(Pin<&mut C>),
    activity: &Activity,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<()>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let mut look_at = activity.accepted + limits.header_read_timeout;
    // Once closing: the instant after which the connection is dropped outright.
    let mut closing: Option<Instant> = None;
    let mut stopped = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stopping.changed(), if !stopped => {
                // The server stops (or its sender is gone): finish what is in flight.
                let _ = changed;
                stopped = true;
                shutdown_gracefully(connection.as_mut());
            }
            () = tokio::time::sleep_until(look_at) => {
                if closing.is_some_and(|until| Instant::now() >= until) {
                    return;
                }
                match activity.check(Instant::now(), &limits) {
                    Verdict::NoRequest => {
                        tracing::debug!("connection closed: no request head in time");
                        return;
                    }
                    Verdict::Idle => {
                        tracing::debug!("idle connection closed");
                        shutdown_gracefully(connection.as_mut());
                        // Nothing is in flight: a well-behaved close takes no time.
                        let until = Instant::now() + limits.header_read_timeout;
                        closing = Some(until);
                        look_at = until;
                    }
                    Verdict::LookAgain(at) => look_at = closing.map_or(at, |until| at.min(until)),
                }
            }
        }
    }
}

/// hyper's HTTP/1 timer, which hyper uses only for the header read timeout (hyper 1.x
/// arms it when it starts waiting for a request head, also while a kept-alive connection
/// waits for its next request). Its sleeps count from the first byte read after they
/// were armed: waiting for a next request is the idle timeout's business, while a head
/// that has begun must still be whole within the header read timeout.
#[derive(Debug, Clone)]
struct HeadTimer(Arc<Activity>);

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadDeadline {
            activity: self.0.clone(),
            reads_when_armed: self.0.reads.load(Ordering::SeqCst),
            duration,
            sleep: None,
        })
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(std::time::Instant::now()))
    }
}

/// A [`HeadTimer`] sleep: pending until a read brings bytes, then `duration` from there.
/// It needs no waker of its own until then: hyper polls it after each read that left the
/// head incomplete, and a read that brings bytes wakes the connection's task.
struct HeadDeadline {
    activity: Arc<Activity>,
    reads_when_armed: u64,
    duration: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Future for HeadDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.sleep.is_none() {
            if this.activity.reads.load(Ordering::SeqCst) == this.reads_when_armed {
                return Poll::Pending;
            }
            this.sleep = Some(Box::pin(tokio::time::sleep(this.duration)));
        }
        this.sleep
            .as_mut()
            .map_or(Poll::Pending, |sleep| sleep.as_mut().poll(cx))
    }
}

impl hyper::rt::Sleep for HeadDeadline {}

/// A socket that counts the reads that bring bytes (for [`HeadTimer`]) and whose writes
/// fail once one has made no progress for `timeout`.
struct Socket {
    stream: TcpStream,
    activity: Arc<Activity>,
    timeout: Duration,
    /// Armed while a write is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Socket {
    fn new(stream: TcpStream, activity: Arc<Activity>, timeout: Duration) -> Self {
        Socket {
            stream,
            activity,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's result on; while it is pending, fails it once the deadline passes.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        self.stalled = None;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for the write timeout",
        )))
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.reads.fetch_add(1, Ordering::SeqCst);
        }
        poll
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.deadline(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.deadline(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.deadline(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 10,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_connection_without_a_request_closes_at_the_header_deadline() {
        let a = Activity::new();
        let l = limits();
        let before = a.accepted + Duration::from_secs(9);
        assert_eq!(
            a.check(before, &l),
            Verdict::LookAgain(a.accepted + l.header_read_timeout)
        );
        assert_eq!(
            a.check(a.accepted + l.header_read_timeout, &l),
            Verdict::NoRequest
        );
    }

    #[test]
    fn a_connection_is_idle_only_with_nothing_in_flight() {
        let a = Arc::new(Activity::new());
        let l = limits();
        let request = InFlight::begin(&a);
        let later = a.accepted + Duration::from_secs(500);
        assert_eq!(
            a.check(later, &l),
            Verdict::LookAgain(later + l.idle_timeout)
        );
        drop(request);
        let ended = a.accepted + Duration::from_millis(a.last_end_ms.load(Ordering::SeqCst));
        assert_eq!(
            a.check(ended, &l),
            Verdict::LookAgain(ended + l.idle_timeout)
        );
        assert_eq!(a.check(ended + l.idle_timeout, &l), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_timer_counts_from_the_first_byte_of_a_head() {
        use hyper::rt::Timer;
        let activity = Arc::new(Activity::new());
        let mut head = HeadTimer(activity.clone()).sleep(Duration::from_secs(1));
        // A kept-alive connection waiting for its next request: no header deadline.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(futures::poll!(head.as_mut()).is_pending());
        // The first bytes of a head arrive: the whole head is due a second later.
        activity.reads.fetch_add(1, Ordering::SeqCst);
        assert!(futures::poll!(head.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(futures::poll!(head.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(futures::poll!(head.as_mut()).is_ready());
    }
}
