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
        self.spawn_with(&[]);
    }

    /// Starts the server with `more` arguments after the usual ones (cluster mode).
    pub fn spawn_with(&mut self, more: &[String]) {
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
            .args(more)
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

/// Whether `redis-cli` is on the PATH (it creates the cluster); like [`have_redis`], a skip
/// unless `BATTLEMENT_REQUIRE_REDIS=1`.
pub fn have_redis_cli() -> bool {
    let found = Command::new("redis-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("BATTLEMENT_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
            panic!("redis-cli not found and BATTLEMENT_REQUIRE_REDIS=1");
        }
        let _ = writeln!(
            std::io::stderr(),
            "skipped: redis-cli not found (set BATTLEMENT_REQUIRE_REDIS=1 to fail)"
        );
    }
    found
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let p = free_port();
        if p < 55_000
            && !taken.contains(&p)
            && !taken.contains(&(p + 10_000))
            && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A Redis Cluster on loopback: three primaries and three replicas (`redis-server
/// --cluster-enabled yes`, then `redis-cli --cluster create --cluster-replicas 1`), node
/// timeout 1 s, in a temporary directory; every server killed and the directory removed on
/// drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Option<Self> {
        if !have_redis() || !have_redis_cli() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "battlement-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = Vec::new();
        for _ in 0..6 {
            let p = free_cluster_port(&ports);
            ports.push(p);
        }
        let mut nodes = Vec::new();
        for &port in &ports {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let extra = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                node_dir.join("nodes.conf").display().to_string(),
                "--cluster-node-timeout".into(),
                "1000".into(),
                // Replicas in sync at once (the default waits 5 s before a diskless sync), and
                // allowed to take over whatever the age of their data: a failover in the tests
                // right after the start.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
                "--cluster-replica-validity-factor".into(),
                "0".into(),
                "--dir".into(),
                node_dir.display().to_string(),
            ];
            let mut server = RedisServer {
                child: None,
                port,
                extra: Vec::new(),
            };
            server.spawn_with(&extra);
            nodes.push(server);
        }
        let cluster = Self { nodes, dir };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok(Duration::from_secs(20));
        cluster.wait_replicas_synced(Duration::from_secs(20));
        Some(cluster)
    }

    /// Waits until every running node reports `cluster_state:ok` and knows 3 primaries.
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                raw(n.port, "CLUSTER INFO")
                    .is_ok_and(|i| i.contains("cluster_state:ok") && i.contains("cluster_size:3"))
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not reach cluster_state:ok within {within:?}");
    }

    /// Waits until three nodes are replicas with their link to the primary up.
    pub fn wait_replicas_synced(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let synced = self
                .nodes
                .iter()
                .filter(|n| {
                    raw(n.port, "INFO replication").is_ok_and(|i| {
                        i.contains("role:slave") && i.contains("master_link_status:up")
                    })
                })
                .count();
            if synced == 3 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the replicas did not sync within {within:?}");
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// The running primaries, as seen by a running node (`CLUSTER NODES`).
    pub fn primaries(&self) -> Vec<&RedisServer> {
        let view = self.any_running().cmd("CLUSTER NODES");
        let ports: Vec<u16> = view
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let addr = l.split(' ').nth(1)?;
                addr.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect();
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && ports.contains(&n.port))
            .collect()
    }

    fn any_running(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a running node")
    }

    /// The node serving the slot of `key` now.
    pub fn primary_of(&self, key: &str) -> &RedisServer {
        let slot: u16 = self
            .any_running()
            .cmd(&format!("CLUSTER KEYSLOT {key}"))
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap();
        let view = self.any_running().cmd("CLUSTER NODES");
        for l in view
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
        {
            let fields: Vec<&str> = l.split(' ').collect();
            let holds = fields.iter().skip(8).any(|r| match r.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => r.parse::<u16>().is_ok_and(|s| s == slot),
            });
            if holds {
                let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return self.nodes.iter().find(|n| n.port == port).unwrap();
            }
        }
        panic!("no primary holds slot {slot}");
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.kill();
        }
    }

    /// `calls` of `cmdstat_<name>` summed over the running nodes.
    pub fn calls(&self, name: &str) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.calls(name))
            .sum()
    }

    /// `CONFIG RESETSTAT` on every running node.
    pub fn reset_stats(&self) {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            n.cmd("CONFIG RESETSTAT");
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
