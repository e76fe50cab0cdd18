//! Test harness: starts the real application in-process on 127.0.0.1:0
//! against the real PostgreSQL and Redis that `scripts/test` started (a
//! fresh database and a fresh Redis logical database per test), plus a small
//! HTTP client and helpers to await conditions under a timeout. Servers the
//! tests start as processes (the binary, redis-server) get their ports from
//! `free_port`, below the ephemeral range, and are killed when their guard
//! drops, also when the test panics first.
#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use vote_api::config::Config;

/// Upper bound for any awaited condition in tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// The five choices, in the order of `/votes`.
pub const CHOICES: [&str; 5] = ["print", "stare", "ai", "revert", "restart"];

/// The real binary, for tests that need its own process.
pub const BIN: &str = env!("CARGO_BIN_EXE_vote-api");

/// Lowest port handed out, as in scripts/lib/stack.sh (`PORT_FLOOR`).
const PORT_FLOOR: u16 = 10_000;

/// A TCP port for a server the test starts, picked like scripts/lib/stack.sh's
/// `free_port`: at random from [10000, the start of the kernel's ephemeral
/// range), since every client socket takes its local port from that range
/// and a port there may be taken again before the server binds it; checked
/// free by binding it, never handed out twice in this process. The server
/// may still lose it to another process: starters retry on a new port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(
        low >= PORT_FLOOR + 1000,
        "the ephemeral range starts at {low}: no room for servers between {PORT_FLOOR} and it"
    );
    let random = RandomState::new();
    for attempt in 0u64..200 {
        let port = PORT_FLOOR + (random.hash_one(attempt) % u64::from(low - PORT_FLOOR)) as u16;
        let mut given = GIVEN.lock().expect("not poisoned");
        let given = given.get_or_insert_with(HashSet::new);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port found between {PORT_FLOOR} and {low}");
}

/// How many times a starter tries a new port after losing one to another
/// process (scripts/lib/stack.sh's `PORT_ATTEMPTS`).
pub const PORT_ATTEMPTS: usize = 5;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts PostgreSQL and Redis")
    })
}

/// A fresh PostgreSQL database and Redis logical database.
#[derive(Clone, Debug)]
pub struct Stack {
    pub database_url: String,
    pub redis_url: String,
}

impl Stack {
    pub async fn fresh() -> Stack {
        Stack {
            database_url: fresh_database().await,
            redis_url: fresh_redis_db().await,
        }
    }

    /// Configuration for an instance on this stack, listening on a free port.
    pub fn config(&self) -> Config {
        let mut config = Config::from_lookup(|_| None).expect("defaults are valid");
        config.database_url = self.database_url.clone();
        config.redis_url = self.redis_url.clone();
        config.bind_addr = "127.0.0.1:0".parse().expect("valid address");
        config.app_version = "test".into();
        config
    }
}

async fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = env("TEST_DATABASE_URL");
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos()
    );
    let client = pg_connect(&admin).await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("URL has a database");
    format!("{base}/{name}")
}

async fn fresh_redis_db() -> String {
    let base = env("TEST_REDIS_URL");
    let mut conn = redis_conn(&format!("{base}/0")).await;
    let n: u64 = redis::cmd("INCR")
        .arg("test:next-db")
        .query_async(&mut conn)
        .await
        .expect("INCR");
    // scripts/test starts Redis with 1024 databases; 0 holds the counter.
    let url = format!("{base}/{}", 1 + n % 1023);
    let mut conn = redis_conn(&url).await;
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("FLUSHDB");
    url
}

/// A direct PostgreSQL connection (for assertions on rows).
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// A direct Redis connection.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// Rows in `votes`.
pub async fn vote_rows(database_url: &str) -> i64 {
    pg_connect(database_url)
        .await
        .query_one("SELECT count(*) FROM votes", &[])
        .await
        .expect("count votes")
        .get(0)
}

/// A child process, killed and reaped when the guard drops: a test that
/// panics leaves no server behind.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard(Some(command.spawn().expect("spawn a child process")))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Its exit status if it exits within `limit`, without blocking the
    /// runtime meanwhile; None if it still runs then.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.0.as_mut()?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig` (e.g. "STOP", "CONT", "TERM").
    pub fn signal(&self, sig: &str) {
        signal(self.id(), sig);
    }

    /// Kills and reaps it (already exited is fine), off the runtime.
    pub async fn kill(&mut self) {
        if let Some(child) = self.0.take() {
            tokio::task::spawn_blocking(move || kill_and_reap(child))
                .await
                .expect("join");
        }
    }
}

fn kill_and_reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            kill_and_reap(child);
        }
    }
}

/// The `vote-api` binary serving a stack in its own process, on a port from
/// `free_port`, its stdout and stderr in a log file.
pub struct Served {
    pub port: u16,
    pub child: ChildGuard,
    log: PathBuf,
}

impl Served {
    /// Starts `vote-api` (its `serve` command) on `stack` with the extra
    /// environment `env`, and waits until it logs that it listens. A port
    /// taken by another process meanwhile: it starts again on a new one.
    pub async fn start(stack: &Stack, env: &[(&str, &str)]) -> Served {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log = std::env::temp_dir().join(format!(
                "vote-api-test-{}-{}.log",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ));
            let out = std::fs::File::create(&log).expect("log file");
            let mut served = Served {
                port,
                child: ChildGuard::spawn(
                    Command::new(BIN)
                        .env("DATABASE_URL", &stack.database_url)
                        .env("REDIS_URL", &stack.redis_url)
                        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
                        .envs(env.iter().copied())
                        .stdout(out.try_clone().expect("log file"))
                        .stderr(out),
                ),
                log,
            };
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if served.log().contains("vote-api listening") {
                    return served;
                }
                if let Some(status) = served.child.exit_within(Duration::ZERO).await {
                    let text = served.log();
                    assert!(
                        text.to_lowercase().contains("address already in use"),
                        "vote-api exited ({status}) before listening: {text}"
                    );
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "vote-api did not listen within {WAIT:?}: {}",
                    served.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("vote-api lost its port to another process {PORT_ATTEMPTS} times");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(
            Request::builder()
                .method(Method::GET)
                .uri(self.url(path))
                .body(Full::default())
                .expect("request"),
        )
        .await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A running instance of the real application.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The `METRICS_ADDR` listener, when the config set one.
    pub metrics_addr: Option<SocketAddr>,
    /// The `PROBE_ADDR` listener, when the config set one.
    pub probe_addr: Option<SocketAddr>,
    pub stack: Stack,
    running: vote_api::Running,
}

impl TestApp {
    /// A fresh stack, seeded, and an instance on it.
    pub async fn start() -> TestApp {
        let stack = Stack::fresh().await;
        Self::start_on(&stack, stack.config()).await
    }

    /// An instance with `config` on `stack` (seeded with a few partners).
    pub async fn start_on(stack: &Stack, config: Config) -> TestApp {
        let pool = vote_api::prepare_db(&config).await.expect("migrate");
        vote_api::db::partners::seed(&pool, 100)
            .await
            .expect("seed");
        let running = vote_api::start(config, CancellationToken::new())
            .await
            .expect("start vote-api");
        TestApp {
            addr: running.addr,
            metrics_addr: running.metrics_addr,
            probe_addr: running.probe_addr,
            stack: stack.clone(),
            running,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(
            self.request(Method::GET, path)
                .body(Full::default())
                .expect("request"),
        )
        .await
    }

    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> Resp {
        self.post_with(path, content_type, body, &[]).await
    }

    /// A POST with extra headers; a name may repeat, and a value is taken as
    /// raw bytes (non-ASCII included, for the tests of bad headers).
    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .request(Method::POST, path)
            .header("content-type", content_type);
        for (name, value) in headers {
            req = req.header(*name, value.as_bytes());
        }
        send(req.body(Full::new(body.into())).expect("request")).await
    }

    pub async fn post_json(&self, path: &str, value: serde_json::Value) -> Resp {
        self.post(path, "application/json", value.to_string()).await
    }

    /// Posts a JSON vote.
    pub async fn vote(&self, choice: &str, referral: Option<&str>) -> Resp {
        self.post_json(
            "/vote",
            serde_json::json!({ "choice": choice, "referral": referral }),
        )
        .await
    }

    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder().method(method).uri(self.url(path))
    }

    /// The total of `/votes`.
    pub async fn total(&self) -> u64 {
        let votes = self.get("/votes").await.json();
        votes
            .as_object()
            .expect("object")
            .values()
            .map(|v| v["count"].as_u64().expect("count"))
            .sum()
    }

    /// The value of an unlabelled series in `/metrics`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text();
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("{series} not exposed"))
            .parse()
            .expect("a number")
    }

    /// Sends `method path` with one extra header and an empty body.
    pub async fn send_with(&self, method: Method, path: &str, header: (&str, &str)) -> Resp {
        let req = self
            .request(method, path)
            .header(header.0, header.1)
            .body(Full::default())
            .expect("request");
        send(req).await
    }

    /// Opens `/stream`.
    pub async fn stream(&self) -> Sse {
        let req = self
            .request(Method::GET, "/stream")
            .body(Full::default())
            .expect("request");
        let resp = tokio::time::timeout(WAIT, client().request(req))
            .await
            .expect("stream answers in time")
            .expect("stream request");
        assert_eq!(resp.status(), StatusCode::OK);
        Sse {
            headers: resp.headers().clone(),
            body: resp.into_body(),
            buffer: String::new(),
        }
    }

    pub async fn stop(self) {
        tokio::time::timeout(WAIT, self.running.stop())
            .await
            .expect("vote-api stops within the timeout");
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A buffered response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body expected ({e}): {}", self.text()))
    }

    pub fn detail(&self) -> String {
        self.json()["detail"].as_str().expect("detail").to_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_str()
            .expect("ASCII header")
    }
}

pub async fn send(req: Request<Full<Bytes>>) -> Resp {
    let resp = tokio::time::timeout(WAIT, client().request(req))
        .await
        .expect("answer within the timeout")
        .expect("request succeeds");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("body within the timeout")
        .expect("body")
        .to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// An open `/stream` connection.
pub struct Sse {
    pub headers: HeaderMap,
    body: Incoming,
    buffer: String,
}

/// One SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl Sse {
    /// The next event (comments and `retry:` skipped), within `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Event> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut name = String::from("message");
                    let mut data = None;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            name = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = Some(v.to_owned());
                        }
                    }
                    if let Some(data) = data {
                        return Some(Event { name, data });
                    }
                    continue;
                }
                let frame = self.body.frame().await?.ok()?;
                if let Ok(bytes) = frame.into_data() {
                    self.buffer.push_str(std::str::from_utf8(&bytes).ok()?);
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads events until a `name` event whose JSON data satisfies `pred`,
    /// within `limit`; that data.
    pub async fn until_event(
        &mut self,
        name: &str,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left).await?;
            if event.name == name {
                let value: serde_json::Value = serde_json::from_str(&event.data).ok()?;
                if pred(&value) {
                    return Some(value);
                }
            }
        }
    }

    /// Reads `votes` events until one satisfies `pred`, within `limit`.
    pub async fn until_votes(
        &mut self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.until_event("votes", limit, pred).await
    }

    /// Reads `status` events until one satisfies `pred`, within `limit`.
    pub async fn until_status(
        &mut self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.until_event("status", limit, pred).await
    }
}

/// The total of a `/votes`-shaped value.
pub fn total_of(votes: &serde_json::Value) -> u64 {
    votes
        .as_object()
        .map(|o| o.values().filter_map(|v| v["count"].as_u64()).sum())
        .unwrap_or(0)
}

/// Polls `check` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private redis-server for tests that stop or empty Redis, on a port
/// from `free_port`.
pub struct OwnRedis {
    pub port: u16,
    child: Option<ChildGuard>,
}

impl OwnRedis {
    /// Starts it; a port lost to another process meanwhile: a new one.
    pub async fn up() -> OwnRedis {
        for _ in 0..PORT_ATTEMPTS {
            let mut redis = OwnRedis {
                port: free_port(),
                child: None,
            };
            if redis.launch().await {
                return redis;
            }
        }
        panic!("redis-server lost its port to another process {PORT_ATTEMPTS} times");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts redis-server again on the same port (stopped, it forgot all).
    pub async fn restart(&mut self) {
        assert!(self.launch().await, "port {} taken meanwhile", self.port);
    }

    /// Starts redis-server on `self.port` and waits until it accepts
    /// connections; false when it exited first (the port was taken).
    async fn launch(&mut self) -> bool {
        let mut child = ChildGuard::spawn(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null()),
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if child.exit_within(Duration::ZERO).await.is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it (SIGKILL: no save, no goodbye), off the runtime.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await;
        }
    }
}

/// Sends `sig` (e.g. "STOP", "CONT", "TERM") to one process.
pub fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{sig} {pid}");
}

impl OwnRedis {
    /// Freezes redis-server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.child.as_ref().expect("running").signal("STOP");
    }

    pub fn resume(&self) {
        self.child.as_ref().expect("running").signal("CONT");
    }
}

/// A private PostgreSQL, started with scripts/lib/stack.sh, for tests that
/// freeze it (the shared one serves every other test).
pub struct OwnPostgres {
    pub port: u16,
    dir: String,
}

impl OwnPostgres {
    pub fn start(name: &str) -> OwnPostgres {
        let root = env!("CARGO_MANIFEST_DIR");
        // Tests of one binary run in parallel in one process: number them.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = format!("{root}/target/test-pg/{name}-{}-{n}", std::process::id());
        let out = Command::new("bash")
            .args([
                "-c",
                r#"source scripts/lib/stack.sh && start_postgres "$1" >&2 && echo "$PG_PORT""#,
            ])
            .args(["bash", &dir])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .expect("bash");
        assert!(out.status.success(), "start_postgres {dir}");
        let port = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("PG_PORT");
        OwnPostgres { port, dir }
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster, then every process it forked (the backends).
    fn pids(&self) -> Vec<u32> {
        let pidfile = std::fs::read_to_string(format!("{}/data/postmaster.pid", self.dir))
            .unwrap_or_default();
        let Some(postmaster) = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(postmaster)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse()
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Freezes the whole server (SIGSTOP): connections stay open and new ones
    /// are accepted by the kernel, but nothing answers.
    pub fn pause(&self) {
        for pid in self.pids() {
            signal(pid, "STOP");
        }
    }

    pub fn resume(&self) {
        for pid in self.pids().into_iter().rev() {
            signal(pid, "CONT");
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
        let _ = Command::new("bash")
            .args(["-c", r#"source scripts/lib/stack.sh && stop_postgres "$1""#])
            .args(["bash", &self.dir])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The live counts Redis holds (the sum of its copies of PostgreSQL's
/// totals), in poll order; `None` when Redis holds none (new or emptied) or
/// does not answer in time.
pub async fn redis_totals(url: &str) -> Option<[u64; 5]> {
    let live = vote_api::live::Live::connect(url, "test".into()).expect("valid Redis URL");
    // A Redis that does not answer (restarting) holds no totals the test can see.
    let read = tokio::time::timeout(WAIT, live.read()).await.ok()?.ok()?;
    // The seed's poll: five choices, the other slots always zero.
    read.map(|s| {
        let [a, b, c, d, e, ..] = s.counts.0;
        [a, b, c, d, e]
    })
}

/// Votes stored per choice in PostgreSQL, in poll order: what every live
/// count must equal.
pub async fn stored_counts(database_url: &str) -> [u64; 5] {
    let rows = pg_connect(database_url)
        .await
        .query("SELECT choice, count(*) FROM votes GROUP BY choice", &[])
        .await
        .expect("count votes by choice");
    let mut counts = [0; 5];
    for row in rows {
        let choice: String = row.get(0);
        let n: i64 = row.get(1);
        let at = ["print", "stare", "ai", "revert", "restart"]
            .iter()
            .position(|c| *c == choice)
            .expect("a choice of the poll");
        counts[at] = u64::try_from(n).expect("a count");
    }
    counts
}
