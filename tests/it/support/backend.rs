//! HTTP backends for health tests: tiny HTTP/1.1 servers on chosen loopback addresses that can
//! be killed (listener closed, connections refused) and restarted on the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running HTTP backend answering every request with `status` and `X-Load: <load>`.
pub struct HttpBackend {
    pub addr: SocketAddr,
    /// Status to answer (change it to make the backend unhealthy without killing it).
    pub status: Arc<AtomicU16>,
    /// Load ×100 reported in the `X-Load` header.
    pub load: Arc<AtomicU16>,
    task: Option<JoinHandle<()>>,
}

impl HttpBackend {
    /// Starts on `ip`, on `port` (0 = any free port).
    pub async fn start(ip: &str, port: u16) -> HttpBackend {
        HttpBackend::try_start(ip, port)
            .await
            .unwrap_or_else(|e| panic!("http backend on {ip}:{port}: {e}"))
    }

    /// Backends on each of `ips`, all on one port (pools probe a single port). The port is the
    /// one the kernel gives the first; if another address has it taken, all start again on a
    /// new one. Binding directly (not checking first, then binding) leaves no window in which
    /// a test running alongside can take the port.
    pub async fn start_same_port(ips: &[&str]) -> Vec<HttpBackend> {
        'attempt: loop {
            let first = HttpBackend::start(ips[0], 0).await;
            let port = first.addr.port();
            let mut all = vec![first];
            for ip in &ips[1..] {
                match HttpBackend::try_start(ip, port).await {
                    Ok(b) => all.push(b),
                    Err(_) => continue 'attempt,
                }
            }
            return all;
        }
    }

    /// [`HttpBackend::start`], with the bind error returned.
    pub async fn try_start(ip: &str, port: u16) -> std::io::Result<HttpBackend> {
        let listener = TcpListener::bind((ip, port)).await?;
        let addr = listener.local_addr()?;
        let mut b = HttpBackend {
            addr,
            status: Arc::new(AtomicU16::new(200)),
            load: Arc::new(AtomicU16::new(0)),
            task: None,
        };
        b.task = Some(tokio::spawn(serve(
            listener,
            b.status.clone(),
            b.load.clone(),
        )));
        Ok(b)
    }

    /// Closes the listener: new connections are refused, like a dead process.
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Starts again on the same address and port.
    pub async fn restart(&mut self) {
        self.kill().await;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        self.task = Some(tokio::spawn(serve(
            listener,
            self.status.clone(),
            self.load.clone(),
        )));
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn serve(listener: TcpListener, status: Arc<AtomicU16>, load: Arc<AtomicU16>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let status = status.load(Ordering::Relaxed);
        let load = load.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let body = if status == 200 { "ok\n" } else { "sick\n" };
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Load: {}.{:02}\r\nConnection: close\r\n\r\n{body}",
                body.len(),
                load / 100,
                load % 100
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
