//! The two HTTP listeners, on sockets of their own (never the DNS ones), served on the tokio
//! runtime: the status listener (TCP, read only) and the control socket (Unix, reads and
//! changes).
//!
//! | path | method | status listener | control socket | what |
//! |---|---|---|---|---|
//! | `/?q=&state=&page=&per=` | GET | yes | yes | the HTML status page: one page of pools (`listing.rs`) |
//! | `/status.json` | GET | yes | yes | the same data as JSON ([`Report`]): every pool, or with the page's keys, that page |
//! | `/metrics` | GET | yes | yes | Prometheus text format 0.0.4 (per-backend series unless `[status] metrics_per_backend = false`) |
//! | `/healthz` | GET | yes | yes | `ok` while serving |
//! | `/reload` | POST | 403 | yes | reload config and zones from the file the server started with |
//! | `/drain?pool=P&backend=B` | POST | 403 | yes | take a backend out of answers, persisted |
//! | `/undrain?pool=P&backend=B` | POST | 403 | yes | put it back |
//!
//! The status listener changes nothing, whatever is sent to it: a web page open on the DNS
//! host can make a browser send a request to a loopback port, but not reach a Unix socket,
//! whose file permissions decide who may act (`socket.rs`). Connections to the status
//! listener from outside `[status] allow` are closed as soon as they are accepted; both
//! listeners cap their connections and close slow and idle ones (`serve.rs`).

mod allow;
pub mod client;
mod html;
mod listing;
mod prom;
pub mod report;
mod serve;
pub(crate) mod socket;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use ipnet::IpNet;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use report::Report;
pub(crate) use serve::Limits;
pub use socket::SocketError;

use crate::control::{Control, DrainError};
use crate::net::NetError;
use listing::{Listing, Params};
use serve::{Connections, Peer};

/// The status page's data: the pools `listing` puts on its page, or every pool in config
/// order without one.
pub(crate) fn report(control: &Control, listing: Option<&Listing>) -> Report {
    let selected = view::select(control.monitor(), listing);
    let peers = view::peers(control.monitor());
    Report::new(
        &selected,
        listing,
        &peers,
        control.metrics(),
        control.uptime(),
        control.config_path(),
    )
}

/// `/metrics`.
pub(crate) fn prometheus(control: &Control) -> String {
    let per_backend = control.metrics_per_backend();
    // Without per-backend series, no backend view is built either.
    let (pools, generation) = view::pools(control.monitor(), per_backend);
    let peers = view::peers(control.monitor());
    prom::render(
        &pools,
        &peers,
        control.metrics(),
        generation,
        control.started_at(),
        per_backend,
    )
}

/// Binds one status listener. Done with the DNS sockets, before privileges are dropped, so the
/// status port may be privileged too.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, NetError> {
    let err = |source| NetError::Bind {
        proto: "status http",
        addr,
        source,
    };
    // std sets SO_REUSEADDR, so a restart does not wait out TIME_WAIT.
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

/// Serves the status listener until `cancel` fires, then lets requests in progress finish.
/// A connection from outside `allow` is closed before a byte of it is read.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    control: Arc<Control>,
    allow: Arc<[IpNet]>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "status listener");
            return;
        }
    };
    let connections = Connections::new(status_router(control), limits, cancel.clone());
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "status accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !allow::allows(&allow, peer.ip()) {
            // Debug, not warn: a flood from outside must not flood the log too.
            tracing::debug!(client = %peer, "status: client not in [status] allow; closed");
            continue;
        }
        connections.admit(stream, Peer(peer.to_string()));
    }
    connections.drained().await;
}

/// Serves the control socket until `cancel` fires.
pub(crate) async fn serve_control(
    socket: socket::ControlSocket,
    control: Arc<Control>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let connections = Connections::new(control_router(control), limits, cancel.clone());
    socket::serve(socket, connections, cancel).await;
}

/// What both listeners answer: the reads.
fn read_routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(status_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

/// The status listener: reads, and a refusal for any request to a control path.
fn status_router(control: Arc<Control>) -> Router {
    read_routes()
        .route("/reload", any(not_here))
        .route("/drain", any(not_here))
        .route("/undrain", any(not_here))
        .with_state(control)
}

/// The control socket: reads and changes.
fn control_router(control: Arc<Control>) -> Router {
    read_routes()
        .route("/reload", post(reload))
        .route("/drain", post(drain))
        .route("/undrain", post(undrain))
        .with_state(control)
}

/// A control request that came to the status listener: refused, whatever its method, origin
/// or content type.
async fn not_here(Extension(peer): Extension<Peer>) -> Response {
    tracing::warn!(client = %peer.0, "status: control request refused; control is on the control socket");
    text(
        StatusCode::FORBIDDEN,
        "the status listener changes nothing; reload, drain and undrain go through the control \
         socket ([control] socket): lbns reload|drain|undrain --config FILE\n"
            .to_owned(),
    )
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `/?q=…&state=…&page=N&per=M`: one page of the pools the search and filter find.
async fn page(State(c): State<Arc<Control>>, Query(params): Query<Params>) -> Response {
    let html = html::page(&report(&c, Some(&Listing::new(&params))));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `/status.json`: every pool in config order, or with any of the page's keys, that page.
async fn status_json(State(c): State<Arc<Control>>, Query(params): Query<Params>) -> Response {
    let listing = (!params.is_empty()).then(|| Listing::new(&params));
    let body =
        serde_json::to_string_pretty(&report(&c, listing.as_ref())).expect("report serializes");
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn metrics(State(c): State<Arc<Control>>) -> Response {
    ([(header::CONTENT_TYPE, prom::CONTENT_TYPE)], prometheus(&c)).into_response()
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n".to_owned())
}

async fn reload(State(c): State<Arc<Control>>, Extension(peer): Extension<Peer>) -> Response {
    tracing::info!(config = %c.config_path().display(), by = %peer.0, "control: reload requested");
    match c.reload_from_file().await {
        Ok(done) => {
            let mut body = format!(
                "reloaded {} (zones: {} read, {} unchanged)\n",
                c.config_path().display(),
                done.stats.read,
                done.stats.reused
            );
            for w in done.warnings {
                tracing::warn!("{w}");
                body.push_str(&format!("warning: {w}\n"));
            }
            text(StatusCode::OK, body)
        }
        Err(e) => {
            tracing::error!("reload rejected, still serving the old configuration:\n{e}");
            // The request was fine; the files on disk are not: 422 with every problem listed.
            text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload rejected, still serving the old configuration:\n{e}\n"),
            )
        }
    }
}

/// `?pool=…&backend=…`, both required.
#[derive(Deserialize)]
struct Target {
    pool: Option<String>,
    backend: Option<String>,
}

async fn drain(
    State(c): State<Arc<Control>>,
    Extension(peer): Extension<Peer>,
    Query(t): Query<Target>,
) -> Response {
    set_drained(c, peer, t, true).await
}

async fn undrain(
    State(c): State<Arc<Control>>,
    Extension(peer): Extension<Peer>,
    Query(t): Query<Target>,
) -> Response {
    set_drained(c, peer, t, false).await
}

async fn set_drained(c: Arc<Control>, peer: Peer, t: Target, drained: bool) -> Response {
    let (Some(pool), Some(backend)) = (t.pool, t.backend) else {
        return text(
            StatusCode::BAD_REQUEST,
            "both pool= and backend= are required\n".to_owned(),
        );
    };
    let verb = if drained { "drained" } else { "undrained" };
    tracing::info!(pool = %pool, backend = %backend, by = %peer.0, "control: {verb} requested");
    // The state file is fsynced: off the runtime threads, which also serve DNS over TCP.
    let result = tokio::task::spawn_blocking(move || c.set_drained(&pool, &backend, drained)).await;
    let Ok(result) = result else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the drain task failed; see the server log\n".to_owned(),
        );
    };
    match result {
        Ok((pool, backend)) => text(StatusCode::OK, format!("{verb} {backend} in {pool}\n")),
        Err(e @ (DrainError::NoPool { .. } | DrainError::NoBackend { .. })) => {
            text(StatusCode::NOT_FOUND, format!("{e}\n"))
        }
        Err(e @ DrainError::Persist { .. }) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
    }
}
