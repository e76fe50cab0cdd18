//! SSE load client for `scripts/bench --streams N`: holds N `/stream`
//! connections open from one source address (loopback only), paces one vote
//! every `--pace-ms` and measures how long each screen takes to show it.
//!
//!   sse-load --addr 127.0.0.1:8000 --streams 9000 --source 127.0.0.2 --hold 10 --probe print
//!
//! Prints `connected N` once every stream got its first frame (the bench
//! starts oha then), and a JSON summary at the end. Everything is bounded in
//! time: connecting (`CONNECT_WAIT`), holding (`--hold`), catching up
//! (`CATCH_UP`). The pacer votes for the `--probe` choice, which nothing else
//! votes for (the bench gives every client process its own and oha votes
//! `ai`), so its k-th `200` means that choice's count is exactly the count
//! at the start plus k: vote→screen latency is from that `200` to the first
//! frame showing that count.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};

const CONNECT_WAIT: Duration = Duration::from_secs(120);
const CATCH_UP: Duration = Duration::from_secs(5);
/// Connection attempts in flight at once (the server's backlog is bounded).
const CONNECTING: usize = 512;
const READ_BUFFER: usize = 2048;

struct Args {
    addr: SocketAddr,
    streams: usize,
    source: IpAddr,
    hold: Duration,
    pace: Duration,
    /// The choice only this process's pacer votes for.
    probe: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8000".parse().expect("valid"),
        streams: 100,
        source: "127.0.0.1".parse().expect("valid"),
        hold: Duration::from_secs(5),
        pace: Duration::from_millis(100),
        probe: "print".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--addr" => args.addr = value.parse().map_err(|e| bad(&e))?,
            "--streams" => args.streams = value.parse().map_err(|e| bad(&e))?,
            "--source" => args.source = value.parse().map_err(|e| bad(&e))?,
            "--hold" => args.hold = Duration::from_secs_f64(value.parse().map_err(|e| bad(&e))?),
            "--pace-ms" => args.pace = Duration::from_millis(value.parse().map_err(|e| bad(&e))?),
            "--probe" if value != "ai" && value.bytes().all(|b| b.is_ascii_lowercase()) => {
                args.probe = value
            }
            "--probe" => return Err(format!("--probe {value}: a choice other than ai (oha's)")),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !args.addr.ip().is_loopback() || !args.source.is_loopback() {
        return Err("loopback addresses only".into());
    }
    Ok(args)
}

/// What one screen saw: when it connected and, per votes frame, its arrival,
/// the total and the probe choice's count.
#[derive(Default)]
struct Screen {
    connect: Option<Duration>,
    refused: bool,
    frames: Vec<Frame>,
}

struct Frame {
    at: Instant,
    total: u64,
    probe: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sse-load: {e}");
            std::process::exit(2);
        }
    };
    let (stop_tx, stop) = watch::channel(false);
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::channel::<()>(args.streams.max(1));
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.streams);
    let probe_key: Arc<[u8]> = format!("\"{}\":{{\"count\":", args.probe)
        .into_bytes()
        .into();
    for _ in 0..args.streams {
        let (gate, stop, connected) = (gate.clone(), stop.clone(), connected_tx.clone());
        let (addr, source, probe_key) = (args.addr, args.source, probe_key.clone());
        tasks.push(tokio::spawn(async move {
            screen(addr, source, &probe_key, gate, stop, connected, started).await
        }));
    }
    drop(connected_tx);
    let mut connected = 0;
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while connected < args.streams {
        match tokio::time::timeout_at(deadline, connected_rx.recv()).await {
            Ok(Some(())) => connected += 1,
            _ => break,
        }
    }
    println!("connected {connected}");
    let held_from = Instant::now();

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let base = format!("http://{}", args.addr);
    // (acknowledged at, the probe count that vote made)
    let mut paced = Vec::new();
    let mut pacer_failures = 0u64;
    let mut probe_count = match votes(&client, &base).await {
        Some(json) => count_after(&json, &probe_key).unwrap_or(0),
        None => {
            eprintln!("sse-load: GET /votes failed");
            std::process::exit(1);
        }
    };
    let ballot = Bytes::from(format!(r#"{{"choice":"{}"}}"#, args.probe));
    let until = Instant::now() + args.hold;
    let mut tick = tokio::time::interval(args.pace);
    while Instant::now() < until {
        tick.tick().await;
        let vote = hyper::Request::post(format!("{base}/vote"))
            .header("content-type", "application/json")
            .body(Full::new(ballot.clone()))
            .expect("request");
        match client.request(vote).await {
            Ok(r) if r.status().is_success() => {
                let acked = Instant::now();
                let _ = r.into_body().collect().await;
                probe_count += 1;
                paced.push((acked, probe_count));
            }
            _ => pacer_failures += 1,
        }
    }

    // Every screen should reach the final total.
    let final_total = votes(&client, &base)
        .await
        .map_or(0, |json| total_of(&json));
    tokio::time::sleep(CATCH_UP).await;
    let held = held_from.elapsed();
    let _ = stop_tx.send(true);
    let mut screens = Vec::with_capacity(tasks.len());
    for task in tasks {
        screens.push(task.await.unwrap_or_default());
    }

    let mut connects: Vec<f64> = screens
        .iter()
        .filter_map(|s| s.connect.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    let refused = screens.iter().filter(|s| s.refused).count();
    let missed = screens
        .iter()
        .filter(|s| s.connect.is_some())
        .filter(|s| s.frames.last().is_none_or(|f| f.total < final_total))
        .count();
    let mut delivery = Vec::new();
    for s in screens.iter().filter(|s| s.connect.is_some()) {
        for (acked, count) in &paced {
            if let Some(f) = s.frames.iter().find(|f| f.probe >= *count) {
                delivery.push(f.at.saturating_duration_since(*acked).as_secs_f64() * 1000.0);
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "streams": args.streams,
            "connected": connected,
            "refused": refused,
            "connect_ms_p50": percentile(&mut connects, 0.50),
            "connect_ms_p99": percentile(&mut connects, 0.99),
            "connect_ms_max": percentile(&mut connects, 1.0),
            "delivery_ms_p50": percentile(&mut delivery, 0.50),
            "delivery_ms_p99": percentile(&mut delivery, 0.99),
            "deliveries": delivery.len(),
            // Frames after the first, per connected screen: the rate while held.
            "frames": screens.iter().map(|s| s.frames.len().saturating_sub(1)).sum::<usize>(),
            "held_s": held.as_secs_f64(),
            "missed": missed,
            "paced_votes": paced.len(),
            "pacer_failures": pacer_failures,
            "final_total": final_total,
        })
    );
}

/// The `/votes` JSON.
async fn votes(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: &str,
) -> Option<Bytes> {
    let req = hyper::Request::get(format!("{base}/votes"))
        .body(Full::default())
        .ok()?;
    let body = client
        .request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    Some(body.to_bytes())
}

/// Sums every `"count":N` in a `/votes`-shaped JSON text, without a parser:
/// thousands of screens parse ten frames a second each.
fn total_of(json: &[u8]) -> u64 {
    let mut total = 0;
    let mut rest = json;
    while let Some((n, after)) = number_after(rest, b"\"count\":") {
        total += n;
        rest = after;
    }
    total
}

/// The number after the first `key` (e.g. `"print":{"count":`) in `json`.
fn count_after(json: &[u8], key: &[u8]) -> Option<u64> {
    number_after(json, key).map(|(n, _)| n)
}

/// The number right after the first `key`, and the text after that number.
fn number_after<'a>(json: &'a [u8], key: &[u8]) -> Option<(u64, &'a [u8])> {
    let at = json.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let n = std::str::from_utf8(&json[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    Some((n, &json[at + digits..]))
}

async fn screen(
    addr: SocketAddr,
    source: IpAddr,
    probe_key: &[u8],
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    connected: tokio::sync::mpsc::Sender<()>,
    started: Instant,
) -> Screen {
    let mut seen = Screen::default();
    let permit = gate.acquire().await.expect("never closed");
    let socket = match TcpSocket::new_v4() {
        Ok(s) => s,
        Err(_) => return seen,
    };
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return seen;
    }
    let Ok(mut conn) = socket.connect(addr).await else {
        return seen;
    };
    let request =
        format!("GET /stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return seen;
    }
    let mut buf = Vec::with_capacity(READ_BUFFER);
    let mut chunk = [0u8; READ_BUFFER];
    let mut head_done = false;
    let mut permit = Some(permit);
    loop {
        let n = tokio::select! {
            read = conn.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return seen,
                Ok(n) => n,
            },
            _ = stop.changed() => return seen,
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !buf.starts_with(b"HTTP/1.1 200") {
                seen.refused = buf.starts_with(b"HTTP/1.1 503");
                return seen;
            }
            buf.drain(..end + 4);
            head_done = true;
        }
        // Chunked transfer: frames arrive inside chunks; events end with a blank line.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            if let Some(at) = event.windows(12).position(|w| w == b"event: votes") {
                let votes = &event[at..];
                let (total, probe) = (total_of(votes), count_after(votes, probe_key).unwrap_or(0));
                if seen.connect.is_none() {
                    seen.connect = Some(now.duration_since(started));
                    permit.take();
                    let _ = connected.send(()).await;
                }
                seen.frames.push(Frame {
                    at: now,
                    total,
                    probe,
                });
            }
        }
    }
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((values.len() as f64 - 1.0) * q).round() as usize;
    (values[rank] * 10.0).round() / 10.0
}
