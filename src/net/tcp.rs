//! DNS over TCP (RFC 7766): length-prefixed messages, pipelined queries answered in order, an
//! idle timeout, and a cap on concurrent connections — past the cap new connections are closed
//! at once so a flood of idle clients cannot starve the rest (RFC 7766 §6.2.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::NetError;
use crate::dns::{Transport, handle};
use crate::metrics::Metrics;
use crate::querylog::QueryLog;
use crate::snapshot::SnapshotCell;

/// Binds a TCP listener on `addr`.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, NetError> {
    let err = |source| NetError::Bind {
        proto: "tcp",
        addr,
        source,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Accepts connections until `cancel` fires.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    cell: SnapshotCell,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "tcp listener");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(client = %peer, "tcp connection cap reached; closing");
            drop(stream);
            continue;
        };
        let cell = cell.clone();
        let cancel = cancel.clone();
        let metrics = metrics.clone();
        let query_log = query_log.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = connection(stream, peer, cell, metrics, query_log, limits.idle_timeout) => {}
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    cell: SnapshotCell,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    idle: Duration,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    let mut query = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 2];
        // The idle timer runs only while waiting for the next query to start.
        match tokio::time::timeout(idle, reader.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        let len = usize::from(u16::from_be_bytes(len));
        query.resize(len, 0);
        match tokio::time::timeout(idle, reader.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        let answered = {
            let snapshot = cell.load();
            let outcome = handle(&snapshot, &query, Transport::Tcp, &mut out);
            metrics.record(Transport::Tcp, outcome.as_ref());
            query_log.record(peer, Transport::Tcp, &query, outcome.as_ref());
            outcome.is_some()
        };
        if answered {
            let prefix = (out.len() as u16).to_be_bytes();
            if writer.write_all(&prefix).await.is_err() || writer.write_all(&out).await.is_err() {
                break;
            }
        }
        // Flush when no further pipelined query is already waiting, so answers to a burst go
        // out together but a lone query is never held back.
        if reader.buffer().is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.flush().await;
    tracing::trace!(client = %peer, "tcp connection closed");
}
