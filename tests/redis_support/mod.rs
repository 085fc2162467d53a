//! The test harness of the Redis tests: a `redis-server` of their own on a free loopback port.
//!
//! Without `redis-server` on the PATH the tests print "skipped: redis-server not found" and
//! pass; with `BATTLEMENT_REQUIRE_REDIS=1` a missing server fails them.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    /// Extra arguments (TLS setup); with them the server is only probed by a TCP connect.
    extra: Vec<String>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn have_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("BATTLEMENT_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
            panic!("redis-server not found and BATTLEMENT_REQUIRE_REDIS=1");
        }
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: redis-server not found (set BATTLEMENT_REQUIRE_REDIS=1 to fail)"
        );
    }
    found
}

/// Sends one inline command and reads one reply (enough for PING, INFO, CONFIG, DBSIZE).
pub fn raw(port: u16, command: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        // A bulk string: `$len\r\n...\r\n`; anything else is one line.
        let complete = match text.strip_prefix('$') {
            Some(rest) => rest.split_once("\r\n").is_some_and(|(len, body)| {
                len.parse::<usize>().map_or(true, |l| body.len() >= l + 2)
            }),
            None => text.ends_with("\r\n"),
        };
        if n == 0 || complete {
            return Ok(text.into_owned());
        }
    }
}

impl RedisServer {
    pub fn start() -> Option<Self> {
        Self::start_with(Vec::new())
    }

    pub fn start_with(extra: Vec<String>) -> Option<Self> {
        if !have_redis() {
            return None;
        }
        let mut server = Self {
            child: None,
            port: free_port(),
            extra,
        };
        server.spawn();
        Some(server)
    }

    pub fn spawn(&mut self) {
        let port = self.port.to_string();
        let ports: [&str; 4] = if self.extra.is_empty() {
            ["--port", &port, "--bind", "127.0.0.1"]
        } else {
            ["--port", "0", "--tls-port", &port]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let up = if self.extra.is_empty() {
                raw(self.port, "PING").is_ok_and(|r| r.starts_with("+PONG"))
            } else {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn cmd(&self, command: &str) -> String {
        raw(self.port, command).expect("redis command")
    }

    /// The ids of the clients whose last command was `cmd`.
    pub fn clients_running(&self, cmd: &str) -> Vec<u64> {
        let list = self.cmd("CLIENT LIST");
        let needle = format!(" cmd={cmd} ");
        list.lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split_once("id=")?.1.split(' ').next()?.parse().ok())
            .collect()
    }

    /// `calls` of `cmdstat_<name>` in `INFO commandstats` (0 when absent).
    pub fn calls(&self, name: &str) -> u64 {
        let info = self.cmd("INFO commandstats");
        let prefix = format!("cmdstat_{name}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The HTTP side shared by the Redis tests: a request from one client address, its status,
/// and a router served on a loopback port.
#[path = "../support/serve.rs"]
mod serve;

pub mod http {
    use std::net::SocketAddr;

    use axum::{Router, body::Body, extract::ConnectInfo};
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    /// `GET /` from 203.0.113.7.
    pub fn request() -> Request<Body> {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
        req
    }

    /// The status, and whether the response had rate-limit headers.
    pub async fn status(app: &Router) -> (StatusCode, bool) {
        let res = app.clone().oneshot(request()).await.unwrap();
        (res.status(), res.headers().contains_key("ratelimit"))
    }

    /// Serves `app` on a loopback port with connect info.
    pub async fn serve(app: Router) -> SocketAddr {
        super::serve::serve(app).await
    }

    /// One HTTP/1.1 GET over a fresh connection; the status code.
    pub async fn http_get(addr: SocketAddr) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        text.split(' ').nth(1).unwrap().parse().unwrap()
    }
}
