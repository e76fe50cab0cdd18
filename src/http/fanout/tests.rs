//! The fan-out against a real broadcaster (its Redis unreachable, so
//! only this test's changes reach it) and real loopback sockets, in
//! paused time: the opening, the keep-alive, and a screen that stops
//! reading.

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;

use super::*;
use crate::actors::broadcaster::{Offline, spawn_offline};
use crate::http::admission::{Admission, Budgets};
use crate::poll::{Counts, CountsView, Snapshot};

struct Setup {
    fanout: Fanout,
    view: CountsView,
    metrics: Arc<Metrics>,
    admission: Admission,
    stop_broadcaster: CancellationToken,
    broadcaster: JoinHandle<()>,
    shutdown: CancellationToken,
    loops: Vec<JoinHandle<()>>,
}

fn setup() -> Setup {
    let Offline {
        handle,
        view,
        metrics,
        shutdown: stop_broadcaster,
        task: broadcaster,
    } = spawn_offline();
    let shutdown = CancellationToken::new();
    let (fanout, loops) = Fanout::spawn(&handle, metrics.clone(), shutdown.clone());
    let admission = Admission::new(Budgets {
        streams: 4,
        others: 1,
    });
    Setup {
        fanout,
        view,
        metrics,
        admission,
        stop_broadcaster,
        broadcaster,
        shutdown,
        loops,
    }
}

/// A screen whose socket the fan-out owns; `recv_buffer` sizes the
/// client's receive buffer (the kernel's minimum when tiny).
async fn screen(s: &Setup, recv_buffer: Option<u32>) -> Client {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
    let (server, _) = accepted.expect("accept");
    let slot = s.admission.stream(None, false).expect("a stream slot");
    s.fanout
        .join(server, Ticket::new(slot, s.metrics.clone()))
        .await;
    Client {
        stream: client.expect("connect"),
        raw: Vec::new(),
    }
}

/// The client side: raw bytes in, HTTP/1.1 chunks out.
struct Client {
    stream: TcpStream,
    raw: Vec<u8>,
}

impl Client {
    /// The next chunk's data, within `limit`; `None` on timeout or end.
    async fn chunk(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(data) = self.take_chunk() {
                    return Some(data);
                }
                let mut buf = [0u8; 4096];
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// One whole chunk off the front of `raw`; panics on broken framing.
    fn take_chunk(&mut self) -> Option<String> {
        let line = self.raw.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&self.raw[..line]).expect("ASCII size");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        let end = line + 2 + size + 2;
        if self.raw.len() < end {
            return None;
        }
        assert_eq!(&self.raw[end - 2..end], b"\r\n", "chunk framing");
        let data = String::from_utf8(self.raw[line + 2..end - 2].to_vec()).expect("UTF-8");
        self.raw.drain(..end);
        Some(data)
    }
}

/// The `print` count of the last `votes` event in `chunk`.
fn print_count(chunk: &str) -> Option<u64> {
    let data = chunk.split("event: votes\ndata: ").nth(1)?.lines().next()?;
    let json: serde_json::Value = serde_json::from_str(data).expect("JSON");
    json["print"]["count"].as_u64()
}

fn snapshot(n: u64) -> Snapshot {
    Snapshot {
        counts: Counts([n, 0, 0, 0, 0, 0, 0, 0]),
        seq: n,
        local: 0,
    }
}

async fn opening(c: &mut Client) -> String {
    // The loop takes the socket over at once: no time passes.
    let retry = c
        .chunk(Duration::from_millis(1))
        .await
        .expect("retry first");
    assert_eq!(retry.as_bytes(), RETRY_FRAME);
    c.chunk(Duration::ZERO).await.expect("the current frame")
}

#[tokio::test(start_paused = true)]
async fn silence_gets_a_keep_alive_comment_every_sse_keepalive() {
    let s = setup();
    let mut c = screen(&s, None).await;
    let current = opening(&mut c).await;
    assert_eq!(print_count(&current), Some(0));
    let counted = c.chunk(STATUS_TICK * 2).await;
    assert!(counted.is_some_and(|c| c.contains(r#""watching":1"#)));
    // Nothing to broadcast any more: the stream is silent from here on.
    s.stop_broadcaster.cancel();
    s.broadcaster.await.expect("broadcaster stopped");
    for _ in 0..2 {
        let silent_since = Instant::now();
        let chunk = c
            .chunk(SSE_KEEPALIVE * 2)
            .await
            .expect("a keep-alive within twice the interval");
        assert_eq!(chunk.as_bytes(), KEEPALIVE_FRAME);
        assert_eq!(silent_since.elapsed(), SSE_KEEPALIVE);
    }
    s.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_status_is_sent_every_status_refresh_and_no_keep_alive_is_needed() {
    let s = setup();
    let mut c = screen(&s, None).await;
    opening(&mut c).await;
    // The broadcaster's first tick sees this screen: `watching` 0 → 1.
    let first = c
        .chunk(STATUS_TICK * 2)
        .await
        .expect("the status with this screen counted");
    assert!(first.starts_with("event: status\n"), "{first}");
    assert!(first.contains(r#""watching":1"#), "{first}");
    // Two keep-alive intervals: the refreshed status fills every silence.
    let start = Instant::now();
    let mut last = start;
    while start.elapsed() < SSE_KEEPALIVE * 2 {
        let chunk = c
            .chunk(STATUS_REFRESH + STATUS_TICK)
            .await
            .expect("a status within STATUS_REFRESH");
        assert_eq!(chunk, first, "the same status, refreshed");
        let gap = last.elapsed();
        assert!(
            gap >= STATUS_REFRESH && gap < STATUS_REFRESH + STATUS_TICK,
            "a status {gap:?} after the one before"
        );
        last = Instant::now();
    }
    assert_eq!(s.metrics.sse_lagged.get(), 0);
    s.shutdown.cancel();
    s.stop_broadcaster.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_stalled_screen_is_skipped_then_gets_the_newest_counts() {
    let s = setup();
    let mut stalled = c_with_tiny_buffer(&s).await;
    let mut reader = screen(&s, None).await;
    opening(&mut stalled).await;
    opening(&mut reader).await;
    // The stalled screen reads nothing while frames go out until its
    // buffers are full and it is skipped, then for three times as many
    // frames again. `sent` is what the reader got meanwhile.
    let mut n = 0;
    let mut buffered_at_most = 0;
    while s.metrics.sse_lagged.get() == 0 {
        n += 1;
        assert!(
            n < 2_000,
            "never skipped: its frames are buffered somewhere"
        );
        buffered_at_most += sent(&s.view, &mut reader, n).await;
    }
    let mut sent_since = 0;
    for _ in 0..3 * n {
        n += 1;
        sent_since += sent(&s.view, &mut reader, n).await;
    }
    // It drains: what was in the kernel's buffers, the end of the frame
    // it took in part, then at once the newest counts; nothing queued
    // in between.
    let mut read = 0;
    let mut newest = None;
    while newest != Some(n) {
        let chunk = stalled
            .chunk(Duration::from_millis(1))
            .await
            .expect("frames up to the newest counts");
        read += chunk.len();
        newest = print_count(&chunk).or(newest);
    }
    assert!(
        read < buffered_at_most + 4096,
        "read {read} bytes to reach the newest counts; {buffered_at_most} were sent before it was skipped, {sent_since} after"
    );
    // And it goes on like any other screen.
    s.view.offer(snapshot(n + 1));
    let next = loop {
        let chunk = stalled.chunk(FRAME_INTERVAL * 2).await.expect("a frame");
        if let Some(count) = print_count(&chunk) {
            break count;
        }
    };
    assert_eq!(next, n + 1);
    s.shutdown.cancel();
    for writer in s.loops {
        writer.await.expect("loop ends");
    }
    assert_eq!(s.admission.in_use().streams, 0, "every slot given back");
    s.stop_broadcaster.cancel();
}

/// Offers counts `n`; the bytes `reader` got up to the frame with them.
async fn sent(view: &CountsView, reader: &mut Client, n: u64) -> usize {
    view.offer(snapshot(n));
    let mut bytes = 0;
    loop {
        let chunk = reader.chunk(FRAME_INTERVAL * 2).await.expect("a frame");
        bytes += chunk.len();
        if print_count(&chunk) == Some(n) {
            // Apart enough that the broadcaster sends each at once.
            tokio::time::sleep(FRAME_INTERVAL * 2).await;
            return bytes;
        }
    }
}

async fn c_with_tiny_buffer(s: &Setup) -> Client {
    screen(s, Some(1)).await
}

use crate::actors::broadcaster::{STATUS_REFRESH, STATUS_TICK};
