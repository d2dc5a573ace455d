//! Connection handling shared by the status listener (TCP) and the control socket (Unix): who
//! is let in, how many at once, and how long a connection may take.
//!
//! A connection is accepted only from an allowed client (on TCP, `[status] allow`, checked on
//! the peer address before a byte is read) and while fewer than `max_connections` are open;
//! otherwise it is closed at once. Once in, HTTP/1.1 is served by hyper under a watchdog that
//! closes it when
//!
//! - a request head has begun to arrive and is not complete `header_timeout` later (a slow or
//!   stalled sender), or
//! - no request is being handled and no byte has moved either way for `idle_timeout` (an idle
//!   keep-alive client, one that connects and sends nothing, or one that stops reading an
//!   answer).
//!
//! A request being handled (a reload can take seconds) is never cut short. Every limit holds
//! whatever the client does: the watchdog runs beside hyper and drops the connection itself.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// Largest request head hyper buffers (its floor is 8 KiB): enough for any request lbns
/// answers, and a bound on what one connection costs.
const MAX_HEAD: usize = 16 * 1024;

/// How long shutdown waits for requests in progress before dropping their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A request head must be complete this long after its first byte arrived.
    pub(crate) header_timeout: Duration,
    /// No request in progress and no byte moving for this long: the connection is closed.
    pub(crate) idle_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub(crate) max_connections: usize,
}

/// Who is on the other end, attached to each request for the handlers' logs.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub(crate) String);

/// The connections of one listener: the cap, and what they serve.
pub(crate) struct Connections {
    app: Router,
    limits: Limits,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
}

impl Connections {
    pub(crate) fn new(app: Router, limits: Limits, cancel: CancellationToken) -> Connections {
        Connections {
            app,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            cancel,
        }
    }

    /// Serves an accepted connection on a task of its own, or closes it at once when
    /// `max_connections` are already open.
    pub(crate) fn admit<S>(&self, stream: S, peer: Peer)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!(client = %peer.0, "status: connection cap reached; closing");
            return;
        };
        tokio::spawn(connection(
            stream,
            peer,
            self.app.clone(),
            self.limits,
            self.cancel.clone(),
            permit,
        ));
    }

    /// Waits (at most [`SHUTDOWN_GRACE`]) until every connection has ended; call after
    /// `cancel` fired, so they are closing.
    pub(crate) async fn drained(&self) {
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.slots.acquire_many(all)).await;
    }
}

/// What the watchdog needs to know of one connection, updated by its I/O and its requests.
#[derive(Debug)]
struct Activity {
    /// The last time a byte was read or written, or a request finished.
    last: Instant,
    /// When the first byte of a request head not yet complete arrived.
    head_since: Option<Instant>,
    /// Requests being handled.
    busy: usize,
}

/// A connection's [`Activity`], and a wakeup for the watchdog when its deadline moves closer
/// (a request head begins: header_timeout is usually the shorter).
struct Watch {
    activity: Mutex<Activity>,
    closer: Notify,
}

type Shared = Arc<Watch>;

fn lock(a: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    // The lock is never held across anything that can panic; a poisoned one still holds
    // consistent numbers.
    a.activity.lock().unwrap_or_else(|e| e.into_inner())
}

impl Activity {
    /// When the connection should be closed if nothing changes; `None` while a request is
    /// being handled.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.busy > 0 {
            return None;
        }
        let idle = self.last + limits.idle_timeout;
        Some(match self.head_since {
            Some(t) => idle.min(t + limits.header_timeout),
            None => idle,
        })
    }
}

/// Marks a request as being handled for as long as it lives.
struct Busy(Shared);

impl Busy {
    fn new(a: &Shared) -> Busy {
        let mut g = lock(a);
        g.busy += 1;
        // The head is complete: hyper hands over a request only once it has all of it.
        g.head_since = None;
        drop(g);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut g = lock(&self.0);
        g.busy -= 1;
        g.last = Instant::now();
    }
}

/// A stream that notes every byte it moves in the connection's [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Shared,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let now = Instant::now();
            let mut g = lock(&self.activity);
            g.last = now;
            // Bytes while nothing is being handled are (part of) the next request head.
            if g.busy == 0 && g.head_since.is_none() {
                g.head_since = Some(now);
                drop(g);
                self.activity.closer.notify_one();
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            lock(&self.activity).last = Instant::now();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves when the connection has been idle or slow past its limits.
async fn watchdog(activity: Shared, limits: Limits) {
    loop {
        let deadline = lock(&activity).deadline(&limits);
        let wait = match deadline {
            Some(d) if d <= Instant::now() => return,
            Some(d) => d,
            // A request is being handled; look again later.
            None => Instant::now() + limits.idle_timeout,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wait) => {}
            () = activity.closer.notified() => {}
        }
    }
}

/// Serves one connection until the client closes it, a limit closes it, or shutdown.
async fn connection<S>(
    stream: S,
    peer: Peer,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity: Shared = Arc::new(Watch {
        activity: Mutex::new(Activity {
            last: Instant::now(),
            head_since: None,
            busy: 0,
        }),
        closer: Notify::new(),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        let peer = peer.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let busy = Busy::new(&activity);
            request.extensions_mut().insert(peer.clone());
            let mut app = app.clone();
            async move {
                let response = app.call(request).await;
                drop(busy);
                response
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .keep_alive(true)
        // The watchdog keeps time; hyper's own header timer would also end idle keep-alive.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let watchdog = watchdog(activity, limits);
    tokio::pin!(watchdog);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(client = %peer.0, error = %e, "status connection");
                }
                return;
            }
            () = &mut watchdog => {
                tracing::debug!(client = %peer.0, "status: closing a slow or idle connection");
                return;
            }
            () = cancel.cancelled(), if !stopping => {
                // Finish the request in progress, if any, then close.
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_state_of_the_connection() {
        let limits = Limits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            max_connections: 1,
        };
        let t = Instant::now();
        let mut a = Activity {
            last: t,
            head_since: None,
            busy: 0,
        };
        assert_eq!(a.deadline(&limits), Some(t + Duration::from_secs(10)));
        // A head began at t + 1 and bytes kept coming until t + 4: 5 s after its start.
        a.head_since = Some(t + Duration::from_secs(1));
        a.last = t + Duration::from_secs(4);
        assert_eq!(a.deadline(&limits), Some(t + Duration::from_secs(6)));
        // Being handled: no deadline at all.
        a.busy = 1;
        assert_eq!(a.deadline(&limits), None);
    }
}
