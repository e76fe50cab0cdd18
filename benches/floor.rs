//! The floor of `scripts/bench --floor N`: the least CPU a frame to a screen
//! can cost on this machine. One thread writes the same pre-encoded frame
//! to every connected `/stream` socket with one plain `write` every
//! `--interval-ms`, skipping a socket whose buffer is full; nothing else.
//! The same load clients as vote-api's (`sse-load`) read it, so the two
//! are measured alike: process CPU over frames the screens received.
//!
//!   floor --addr 127.0.0.1:9000 --frame 'event: votes\ndata: {...}\n\n'
//!
//! Around that thread, just enough HTTP for `sse-load`: `GET /stream` gets
//! vote-api's head and the frame; anything else (its pacer's votes, its
//! `/votes`) gets `200 {}` and a close. Loopback only, no dependencies
//! beyond the standard library.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// vote-api's `/stream` head, minus its `date` (same length give or take).
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\nx-accel-buffering: no\r\nx-content-type-options: nosniff\r\n\
connection: close\r\ntransfer-encoding: chunked\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
const OTHER: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
const MAX_HEAD: usize = 16 * 1024;

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:X}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:9000".parse().expect("valid");
    let mut frame = String::from("event: votes\ndata: {}\n\n");
    let mut interval = Duration::from_millis(100);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("floor: {flag} needs a value");
            std::process::exit(2);
        };
        let parsed = match flag.as_str() {
            "--addr" => value.parse().map(|a| addr = a).map_err(|e| e.to_string()),
            "--frame" => {
                frame = value.replace("\\n", "\n");
                Ok(())
            }
            "--interval-ms" => value
                .parse()
                .map(|ms| interval = Duration::from_millis(ms))
                .map_err(|e| e.to_string()),
            _ => Err("unknown option".into()),
        };
        if let Err(e) = parsed {
            eprintln!("floor: {flag} {value}: {e}");
            std::process::exit(2);
        }
    }
    if !addr.ip().is_loopback() {
        eprintln!("floor: loopback addresses only");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let (tx, rx) = mpsc::channel::<TcpStream>();
    // A shell's `$(...)` drops the event's closing blank line.
    let frame = format!("{}\n\n", frame.trim_end_matches('\n'));
    let frame = chunk(frame.as_bytes());
    let mut opening = chunk(b"retry: 2000\n\n");
    opening.extend_from_slice(&frame);
    std::thread::spawn(move || writer(rx, frame, interval));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_nodelay(true);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        match read_head(&mut conn) {
            Ok(true) => {
                let mut first = HEAD.to_vec();
                first.extend_from_slice(&opening);
                if conn.write_all(&first).is_ok() && conn.set_nonblocking(true).is_ok() {
                    let _ = tx.send(conn);
                }
            }
            Ok(false) => {
                let _ = conn.write_all(OTHER);
            }
            Err(_) => {}
        }
    }
}

/// Reads one request (head and `content-length` body); true for `GET /stream`.
fn read_head(conn: &mut TcpStream) -> io::Result<bool> {
    let mut buf = Vec::with_capacity(1024);
    let mut part = [0u8; 1024];
    let end = loop {
        let n = conn.read(&mut part)?;
        if n == 0 || buf.len() > MAX_HEAD {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&part[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(MAX_HEAD);
    let mut body = buf.len() - end;
    while body < length {
        let n = conn.read(&mut part)?;
        if n == 0 {
            break;
        }
        body += n;
    }
    Ok(head.starts_with("get /stream "))
}

/// The floor itself: the same bytes to every socket, one `write` each.
fn writer(joins: mpsc::Receiver<TcpStream>, frame: Vec<u8>, interval: Duration) {
    let mut screens: Vec<TcpStream> = Vec::new();
    let mut next = Instant::now() + interval;
    loop {
        screens.extend(joins.try_iter());
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        screens.retain_mut(|s| match s.write(&frame) {
            Ok(n) => n > 0,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        });
    }
}
