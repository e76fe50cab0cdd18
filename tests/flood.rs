//! A flood never locks the door (SPEC §11.6, docs/contract.md#eviction):
//! with the general budget full of keep-alive clients, idle or busy, a new
//! client is still answered, and the probes answer on their own listener.
//! Real sockets speaking HTTP/1.1 by hand, so each client is exactly one
//! connection. A busy client is one whose vote's body is still coming.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Stack, TestApp, WAIT, eventually, pg_connect};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vote_api::actors::writer::PEER_SHARE;
use vote_api::config::Config;
use vote_api::http::admission::{DEFAULT_MAX_CONNECTIONS, IDLE_GRACE};
use vote_api::http::{HEADER_READ_TIMEOUT, SHUTDOWN_GRACE};

const VOTE: &str = r#"{"choice":"ai"}"#;

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A keep-alive client on one connection.
struct Client(TcpStream);

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connects in time")
            .expect("connect");
        Client(stream)
    }

    /// A client from `source`, another loopback address than the default.
    async fn connect_from(addr: SocketAddr, source: [u8; 4]) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind a loopback source");
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connects in time")
            .expect("connect");
        Client(stream)
    }

    /// Sends a whole vote under idempotency key `key`; `answer` reads it.
    async fn send_vote(&mut self, key: &str) {
        let head = format!(
            "POST /vote HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{VOTE}",
            VOTE.len()
        );
        self.write(&head).await;
    }

    async fn write(&mut self, bytes: &str) {
        self.0.write_all(bytes.as_bytes()).await.expect("write");
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.write(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        self.answer().await
    }

    /// Sends a vote's head and all of its body but the last byte: the
    /// request stays in progress until `finish`.
    async fn start_vote(&mut self) {
        let head = format!(
            "POST /vote HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            VOTE.len()
        );
        self.write(&head).await;
        self.write(&VOTE[..VOTE.len() - 1]).await;
    }

    async fn finish(&mut self) -> Answer {
        self.write(&VOTE[VOTE.len() - 1..]).await;
        self.answer().await
    }

    async fn vote(&mut self) -> Answer {
        self.start_vote().await;
        self.finish().await
    }

    /// Reads one answer (its length is always known: no streams here).
    async fn answer(&mut self) -> Answer {
        tokio::time::timeout(WAIT, self.read_answer())
            .await
            .expect("answered in time")
    }

    async fn read_answer(&mut self) -> Answer {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = self.0.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before an answer: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut body = buf[end + 4..].to_vec();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let mut answer = Answer {
            status,
            head,
            body: String::new(),
        };
        let length: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = self.0.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "closed within the body");
            body.extend_from_slice(&chunk[..n]);
        }
        answer.body = String::from_utf8_lossy(&body).into_owned();
        answer
    }

    /// Whether the server closed this connection (within `WAIT`).
    async fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(WAIT, self.0.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// An app with `/metrics` on its own listener (the public port may have
/// no room to ask it), configured further by `configure`.
async fn app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.metrics_addr = Some("127.0.0.1:0".parse().expect("address"));
    configure(&mut config);
    TestApp::start_on(&stack, config).await
}

/// An app whose general budget is `budget` connections.
async fn app_with_budget(budget: usize) -> TestApp {
    app_with(|config| config.max_connections = Some(budget)).await
}

async fn metrics(app: &TestApp) -> String {
    let mut client = Client::connect(app.metrics_addr.expect("a metrics listener")).await;
    let answer = client.get("/metrics").await;
    assert_eq!(answer.status, 200);
    answer.body
}

fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

async fn clients(addr: SocketAddr, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Client::connect(addr).await);
    }
    clients
}

#[tokio::test]
async fn probes_answer_on_their_own_listener_with_the_public_budget_full() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.max_connections = Some(2);
    config.probe_addr = Some("127.0.0.1:0".parse().expect("address"));
    let app = TestApp::start_on(&stack, config).await;
    let probes = app.probe_addr.expect("a probe listener");
    assert_ne!(probes.port(), app.addr.port());

    let mut busy = clients(app.addr, 2).await;
    for client in &mut busy {
        client.start_vote().await;
    }
    for (path, status) in [
        ("/health", 200),
        ("/ready", 200),
        ("/ready/votes", 200),
        // Nothing else: the probe port is not a second way in.
        ("/votes", 404),
        ("/metrics", 404),
    ] {
        let answer = Client::connect(probes).await.get(path).await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
    }
    // One keep-alive probe client answers again and again.
    let mut kubelet = Client::connect(probes).await;
    for _ in 0..3 {
        assert_eq!(kubelet.get("/ready/votes").await.status, 200);
    }
    for client in &mut busy {
        assert_eq!(client.finish().await.status, 200);
    }
    drop(busy);
    // Without the budget full, the public port answers the probes as before.
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_clients_give_their_slots_to_a_new_one() {
    let app = app_with_budget(3).await;
    let mut idle = clients(app.addr, 3).await;
    for client in &mut idle {
        assert_eq!(client.get("/health").await.status, 200);
    }
    // Within the grace the new client may be refused; once the idle ones
    // have been idle for IDLE_GRACE, one gives its slot up — long before
    // the header timeout would have closed them anyway.
    let within = IDLE_GRACE + Duration::from_secs(3);
    assert!(within < HEADER_READ_TIMEOUT);
    let served = eventually(within, || {
        let addr = app.addr;
        async move {
            let answer = Client::connect(addr).await.vote().await;
            if answer.status == 503 {
                assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
                assert!(answer.closes(), "{answer:?}");
                return false;
            }
            assert_eq!(answer.status, 200, "{answer:?}");
            true
        }
    })
    .await;
    assert!(served, "a new client is served once idle ones are closed");
    // The longest idle (here also the oldest) was closed without a word.
    assert!(idle[0].closed_by_server().await);
    assert!(series(&metrics(&app).await, "connections_evicted_total") >= 1.0);
    app.stop().await;
}

#[tokio::test]
async fn with_busy_clients_the_oldest_answers_with_connection_close() {
    let app = app_with_budget(3).await;
    let mut busy = clients(app.addr, 3).await;
    for client in &mut busy {
        client.start_vote().await;
    }
    let mut newcomer = Client::connect(app.addr).await;
    newcomer.start_vote().await;
    let evicted = eventually(WAIT, || async {
        series(&metrics(&app).await, "connections_evicted_total") == 1.0
    })
    .await;
    assert!(evicted, "the newcomer asked one connection to leave");
    let oldest = busy[0].finish().await;
    assert_eq!(oldest.status, 200, "{oldest:?}");
    assert!(oldest.closes(), "the oldest was asked to leave: {oldest:?}");
    assert!(busy[0].closed_by_server().await);
    let served = newcomer.finish().await;
    assert_eq!(served.status, 200, "the newcomer took the slot: {served:?}");
    assert!(!served.closes(), "{served:?}");
    for client in &mut busy[1..] {
        let answer = client.finish().await;
        assert_eq!(answer.status, 200);
        assert!(!answer.closes(), "only the oldest leaves: {answer:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn with_no_slot_within_50_ms_a_new_client_gets_503_and_it_is_counted() {
    let app = app_with_budget(2).await;
    let mut busy = clients(app.addr, 2).await;
    for client in &mut busy {
        client.start_vote().await;
    }
    // Both in-progress votes stay in progress for far longer than 50 ms.
    let started = std::time::Instant::now();
    let answer = Client::connect(app.addr).await.vote().await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(answer.closes());
    assert!(answer.body.contains("overloaded"), "{}", answer.body);
    assert!(started.elapsed() < WAIT / 2);
    let text = metrics(&app).await;
    assert_eq!(
        series(
            &text,
            r#"http_requests_total{endpoint="/vote",method="POST",status="503"}"#
        ),
        1.0,
        "{text}"
    );
    for client in &mut busy {
        assert_eq!(client.finish().await.status, 200);
    }
    let counted = eventually(WAIT, || async {
        let timeline = app.get("/timeline.json").await.json();
        timeline["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| b["overloaded"].as_u64().expect("overloaded"))
            .sum::<u64>()
            == 1
    })
    .await;
    assert!(counted, "the refusal is an overloaded vote on the timeline");
    app.stop().await;
}

#[tokio::test]
async fn without_max_connections_a_crowd_beyond_the_budget_is_served_not_rotated() {
    let app = app_with(|config| {
        assert_eq!(config.max_connections, None, "the default budget");
        config.max_streams = Some(64);
    })
    .await;
    // More keep-alive clients than the general budget's own slots: the
    // rest borrow free stream slots (56 of 64 may be lent).
    let crowd = DEFAULT_MAX_CONNECTIONS + 32;
    let mut clients = clients(app.addr, crowd).await;
    for round in 0..2 {
        for client in &mut clients {
            let answer = client.get("/health").await;
            assert_eq!(answer.status, 200, "round {round}: {answer:?}");
            assert!(!answer.closes(), "round {round}: nobody is rotated");
        }
    }
    let text = metrics(&app).await;
    assert_eq!(series(&text, "connections_evicted_total"), 0.0);
    assert!(series(&text, r#"connections_open{budget="other"}"#) >= crowd as f64);
    // A screen still finds one of the slots kept free.
    let mut screen = Client::connect(app.addr).await;
    screen
        .write("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let mut head = [0u8; 12];
    tokio::time::timeout(WAIT, screen.0.read_exact(&mut head))
        .await
        .expect("answered in time")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 200");
    app.stop().await;
}

/// With one address's votes queued in the thousands, a vote from another
/// address is committed in the next round, not behind them all: its batch
/// holds at most `PEER_SHARE` of the flood's votes, and the rest come after.
#[tokio::test]
async fn a_new_address_votes_in_the_next_round_not_behind_a_flood() {
    let app = app_with(|_| {}).await;
    // Hold the writer in its first round: its INSERT waits for this lock.
    let mut pg = pg_connect(&app.stack.database_url).await;
    let lock = pg.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE votes IN EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut first = Client::connect(app.addr).await;
    first.send_vote("first").await;
    let observer = pg_connect(&app.stack.database_url).await;
    let waiting = eventually(WAIT, || async {
        let row = observer
            .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
            .await
            .expect("locks");
        row.get::<_, i64>(0) > 0
    })
    .await;
    assert!(waiting, "the first round waits for the lock");
    // Meanwhile a flood from 127.0.0.1, then one phone from 127.0.0.2.
    let flood = PEER_SHARE + 8;
    let mut voters = clients(app.addr, flood).await;
    for (n, voter) in voters.iter_mut().enumerate() {
        voter.send_vote(&format!("flood-{n:04}")).await;
    }
    let mut phone = Client::connect_from(app.addr, [127, 0, 0, 2]).await;
    phone.send_vote("phone").await;
    let queued = eventually(WAIT, || async {
        let text = metrics(&app).await;
        series(&text, r#"actor_queue_depth{actor="writer"}"#) >= (flood + 1) as f64
    })
    .await;
    assert!(queued, "every vote waits in the writer's mailbox");
    lock.commit().await.expect("unlock");
    assert_eq!(phone.answer().await.status, 200);
    for voter in &mut voters {
        assert_eq!(voter.answer().await.status, 200);
    }
    first.answer().await;
    let row = observer
        .query_one(
            "SELECT count(*) FILTER (WHERE f.batch_id = p.batch_id), \
                    count(*) FILTER (WHERE f.batch_id > p.batch_id) \
             FROM votes f, votes p \
             WHERE f.idempotency_key LIKE 'flood-%' AND p.idempotency_key = 'phone'",
            &[],
        )
        .await
        .expect("batches");
    let (beside, after): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        beside <= PEER_SHARE as i64,
        "{beside} flood votes beside the phone's"
    );
    assert!(after >= 8, "{after} flood votes after the phone's");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_an_idle_keep_alive_connection_at_once() {
    let app = TestApp::start().await;
    let mut idle = Client::connect(app.addr).await;
    assert_eq!(idle.get("/health").await.status, 200);
    let stopping = tokio::spawn(app.stop());
    // Not left open until the drain gives up on it (`SHUTDOWN_GRACE`).
    let closed = tokio::time::timeout(SHUTDOWN_GRACE / 2, idle.0.read(&mut [0u8; 64])).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "closed before the grace ran out: {closed:?}"
    );
    stopping.await.expect("stops");
}
