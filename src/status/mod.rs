//! The status listener: HTTP on its own sockets (never the DNS ones), served by axum on the
//! tokio runtime.
//!
//! | path | method | what |
//! |---|---|---|
//! | `/` | GET | the HTML status page |
//! | `/status.json` | GET | the same data as JSON ([`Report`]) |
//! | `/metrics` | GET | Prometheus text format 0.0.4 |
//! | `/healthz` | GET | `ok` while serving |
//! | `/reload` | POST | reload config and zones from the file the server started with |
//! | `/drain?pool=P&backend=B` | POST | take a backend out of answers, persisted |
//! | `/undrain?pool=P&backend=B` | POST | put it back |
//!
//! Every request, reads included, must come from an address in `[status] allow`; others get
//! 403. The control endpoints have no other authentication, which is why the default listener
//! and allowlist are loopback only.

mod allow;
pub mod client;
mod html;
mod prom;
pub mod report;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ipnet::IpNet;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use report::Report;

use crate::control::{Control, DrainError};
use crate::net::NetError;

/// The status page's data.
pub(crate) fn report(control: &Control) -> Report {
    let (pools, generation) = view::pools(control.monitor());
    Report::new(
        &pools,
        control.metrics(),
        generation,
        control.uptime(),
        control.config_path(),
    )
}

/// `/metrics`.
pub(crate) fn prometheus(control: &Control) -> String {
    let (pools, generation) = view::pools(control.monitor());
    prom::render(&pools, control.metrics(), generation, control.started_at())
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

/// Serves `listener` until `cancel` fires, then lets requests in progress finish.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    control: Arc<Control>,
    allow: Arc<[IpNet]>,
    cancel: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "status listener");
            return;
        }
    };
    let app = router(control, allow);
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, addr = ?addr, "status listener stopped");
    }
}

fn router(control: Arc<Control>, allow: Arc<[IpNet]>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(status_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/reload", post(reload))
        .route("/drain", post(drain))
        .route("/undrain", post(undrain))
        .layer(middleware::from_fn_with_state(allow, allowlist))
        .with_state(control)
}

/// Rejects clients outside the allowlist before any handler runs.
async fn allowlist(
    State(allow): State<Arc<[IpNet]>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if allow::allows(&allow, peer.ip()) {
        return next.run(request).await;
    }
    tracing::warn!(client = %peer, path = %request.uri().path(), "status: client not in [status] allow");
    text(
        StatusCode::FORBIDDEN,
        format!("{} is not in [status] allow\n", peer.ip()),
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

async fn page(State(c): State<Arc<Control>>) -> Response {
    let html = html::page(&report(&c));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn status_json(State(c): State<Arc<Control>>) -> Response {
    let body = serde_json::to_string_pretty(&report(&c)).expect("report serializes");
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

async fn reload(State(c): State<Arc<Control>>) -> Response {
    tracing::info!(config = %c.config_path().display(), "status: reload requested");
    match c.reload_from_file().await {
        Ok(warnings) => {
            let mut body = format!("reloaded {}\n", c.config_path().display());
            for w in warnings {
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

async fn drain(State(c): State<Arc<Control>>, Query(t): Query<Target>) -> Response {
    set_drained(c, t, true).await
}

async fn undrain(State(c): State<Arc<Control>>, Query(t): Query<Target>) -> Response {
    set_drained(c, t, false).await
}

async fn set_drained(c: Arc<Control>, t: Target, drained: bool) -> Response {
    let (Some(pool), Some(backend)) = (t.pool, t.backend) else {
        return text(
            StatusCode::BAD_REQUEST,
            "both pool= and backend= are required\n".to_owned(),
        );
    };
    let verb = if drained { "drained" } else { "undrained" };
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
