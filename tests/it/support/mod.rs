//! Test support: servers started in-process on ephemeral loopback ports, a tiny DNS client over
//! real UDP and TCP sockets, and helpers to run external tools (dig, the lbns binary).

#![allow(dead_code)]

pub mod alloc;
pub mod backend;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use lbns::app::Server;
use lbns::config::Config;

/// Held by the tests that measure under dnsperf load, so they do not load the machine for
/// each other.
pub static LOAD_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bundled example zone, used by most tests so they exercise what users run.
pub const EXAMPLE_ZONE: &str = include_str!("../../../zones/cluster.example.zone");

/// A config around the bundled zone listening on an ephemeral port; `extra` is appended.
pub fn example_config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
udp_workers = 2

[[zone]]
origin = "cluster.example."
file = "cluster.example.zone"

[[pool]]
name = "www.cluster.example."
backends = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"]

[[pool]]
name = "api.cluster.example."
answers = 2
backends = ["127.0.0.5", "127.0.0.6", "127.0.0.7"]
{extra}"#
    )
}

/// A server running in this process, with its files in a temporary directory.
pub struct TestServer {
    pub server: Server,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The status listener, unless the config turned it off.
    pub status: Option<SocketAddr>,
    /// The control socket.
    pub control: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Writes `files` (name, contents) and `lbns.toml` into a fresh directory and starts lbns.
    /// Without a `[status]` table the status listener goes on an ephemeral port, so tests
    /// running side by side never fight over the default 8053.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut config = config.to_owned();
        if !config.contains("[status]") {
            config.push_str("\n[status]\nlisten = \"127.0.0.1:0\"\n");
        }
        std::fs::write(dir.path().join("lbns.toml"), config).unwrap();
        TestServer::start_in(dir).await
    }

    /// Starts lbns on the `lbns.toml` already in `dir`.
    pub async fn start_in(dir: tempfile::TempDir) -> TestServer {
        let path = dir.path().join("lbns.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let server = Server::start(config)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        TestServer {
            udp: server.udp_addrs()[0],
            tcp: server.tcp_addrs()[0],
            status: server.status_addrs().first().copied(),
            control: server.control_socket().to_owned(),
            server,
            dir,
        }
    }

    /// Stops this server and starts a new one on the same files (new ephemeral ports).
    pub async fn restart(self) -> TestServer {
        self.server.shutdown().await;
        TestServer::start_in(self.dir).await
    }

    /// The status listener's address, which this test expects to be on.
    pub fn status(&self) -> SocketAddr {
        self.status.expect("the status listener is on")
    }

    /// The bundled example zone with the standard pools.
    pub async fn example() -> TestServer {
        TestServer::start(
            &example_config(""),
            &[("cluster.example.zone", EXAMPLE_ZONE)],
        )
        .await
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("lbns.toml")
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// Builds a query for `name`/`rtype` (class IN), with EDNS payload `edns` if given.
pub fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m
}

/// Sends raw bytes over UDP and returns the raw reply, or `None` after a short wait.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends `message` over UDP and parses the reply (panics if none comes).
pub fn udp(addr: SocketAddr, message: &Message) -> Message {
    let reply = udp_raw(addr, &message.to_vec().unwrap()).expect("no UDP reply");
    Message::from_vec(&reply).expect("reply parses")
}

/// Shorthand: a UDP query with EDNS 1232.
pub fn ask(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    udp(addr, &query(name, rtype, Some(1232)))
}

/// Writes one length-prefixed message on a TCP stream.
pub fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
}

/// Reads one length-prefixed message from a TCP stream.
pub fn tcp_recv(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// One query over a fresh TCP connection.
pub fn tcp(addr: SocketAddr, message: &Message) -> Message {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp_send(&mut s, &message.to_vec().unwrap());
    Message::from_vec(&tcp_recv(&mut s).unwrap()).unwrap()
}

/// The addresses in the answer section, in order.
pub fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// Fails the test with a clear message when an external tool is missing: tests never skip.
pub fn require_tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed; run scripts/install-deps.sh (scripts/test.sh does)")
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `dig` against `server` with `args`, always with an explicit server and port.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let dig = require_tool("dig");
    let out = Command::new(dig)
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+norec",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory holding `lbns.toml` (`config`) and `cluster.example.zone` (`zone`), for
/// tests that run lbns as a process.
pub fn config_dir(config: &str, zone: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lbns.toml"), config).unwrap();
    std::fs::write(dir.path().join("cluster.example.zone"), zone).unwrap();
    dir
}

/// The bundled zone plus `large.cluster.example. TXT`: ten 200-octet strings, about 2 KB, an
/// answer larger than a small MTU.
pub fn zone_with_large_txt() -> String {
    let mut zone = EXAMPLE_ZONE.to_owned();
    for i in 0..10 {
        zone.push_str(&format!(
            "large 300 IN TXT \"{}\"\n",
            i.to_string().repeat(200)
        ));
    }
    zone
}

/// What a shell script run in a fresh network namespace printed, in sections that each start
/// with a line `== name`.
pub struct Sections {
    stdout: String,
    /// Shown with every failure (the server's log).
    log: String,
}

impl Sections {
    /// Runs `script` with `sh` under `unshare -n` (needs root) and fails the test if it fails;
    /// `log` is the file the script sends the server's stderr to.
    pub fn run_in_netns(script: &str, log: &Path) -> Sections {
        let unshare = require_tool("unshare");
        let out = Command::new(unshare)
            .args(["-n", "sh", "-c", script])
            .output()
            .unwrap();
        let sections = Sections {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            log: std::fs::read_to_string(log).unwrap_or_default(),
        };
        assert!(
            out.status.success(),
            "unshare -n (needs root) failed: {}\n{}\nlbns: {}",
            String::from_utf8_lossy(&out.stderr),
            sections.stdout,
            sections.log
        );
        sections
    }

    /// The text of section `name`, up to the next one.
    pub fn section(&self, name: &str) -> &str {
        let start = self
            .stdout
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| {
                panic!("no {name} section in:\n{}\nlbns: {}", self.stdout, self.log)
            });
        let rest = &self.stdout[start + name.len() + 4..];
        &rest[..rest.find("== ").unwrap_or(rest.len())]
    }

    /// Asserts that section `name` has each of `lines` as a whole line.
    pub fn expect_lines(&self, name: &str, lines: &[&str]) {
        let text = self.section(name);
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "{name}: expected the line {line:?} in:\n{text}\nlbns: {}",
                self.log
            );
        }
    }

    /// Asserts that section `name` contains each of `wanted`.
    pub fn expect(&self, name: &str, wanted: &[&str]) {
        let text = self.section(name);
        for w in wanted {
            assert!(
                text.contains(w),
                "{name}: expected {w:?} in:\n{text}\nlbns: {}",
                self.log
            );
        }
    }
}

/// The lbns binary cargo built for this test run (release under `cargo test --release`).
pub fn lbns_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lbns"))
}

/// A `lbns serve` (or other) child process, killed on drop if still running.
pub struct Proc(pub std::process::Child);

/// Starts `lbns [args] serve --config <config>` with stdout discarded and stderr as given.
pub fn spawn_serve(args: &[&str], config: &Path, stderr: std::process::Stdio) -> Proc {
    Proc(
        Command::new(lbns_bin())
            .args(args)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One HTTP request to the status listener: (status code, Content-Type, body).
pub async fn http(method: &str, addr: SocketAddr, path_and_query: &str) -> (u16, String, String) {
    let url = format!("http://{addr}{path_and_query}");
    let request = match method {
        "GET" => reqwest::Client::new().get(&url),
        "POST" => reqwest::Client::new().post(&url),
        other => panic!("method {other}"),
    };
    let response = request
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// One HTTP/1.1 request over the control socket at `socket`: (status code, body).
pub async fn control_http(socket: &Path, method: &str, path_and_query: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    let request =
        format!("{method} {path_and_query} HTTP/1.1\r\nHost: lbns\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("control socket answers within 30 s")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (code, body.to_owned())
}

/// `lbns ARGS...` run to completion (off the async runtime): (success, stdout, stderr).
pub async fn lbns_cli(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(lbns_bin()).args(&args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The value of the unlabelled metric `name` on the status listener at `status` (blocking: a
/// plain HTTP/1.0 GET of `/metrics`, so the body comes unchunked); 0 when absent.
pub fn metric(status: SocketAddr, name: &str) -> f64 {
    let mut s = TcpStream::connect(status).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {status}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
