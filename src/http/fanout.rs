//! The fan-out: every `/stream` socket after its response head, written by
//! `FANOUT_LOOPS` loops instead of one task and one hyper connection per
//! screen. The broadcaster's frames are chunk-encoded once per loop and
//! written to each socket with one plain `write`; a socket whose buffer is
//! full is skipped and gets the newest counts when it drains; a socket whose
//! peer is gone is closed. `sse.rs` admits a screen, `mod.rs` hands its
//! socket over (`Handover`), this module owns it until it closes: the
//! front here (`Handover`, `Tap`, `Fanout`), the loops in `fanout/writer.rs`,
//! their system calls in `fanout/sys.rs`.
//!
//! Why hand over inside hyper rather than reading the first request head
//! before hyper: a screen's `GET /stream` is often not the first request of
//! its connection (a browser reuses the keep-alive connection that loaded
//! `/results`, nginx reuses its upstream connections), so only hyper sees
//! it. hyper gives a connection back whole with `Connection::into_parts`;
//! the handler answers with the stream's head and a body that never yields,
//! and the socket leaves hyper once hyper has flushed that head: hyper calls
//! the socket's `poll_flush` only when its write buffer is empty, so `Tap`
//! marks that moment. The bytes on the wire stay those hyper wrote before:
//! the same head, then each frame as one HTTP/1.1 chunk, `0\r\n\r\n` at
//! shutdown.
//!
//! The write budget: a loop may spend at most `WRITE_SHARE` of one core
//! writing (its thread's CPU time, not the wall clock, so a busy machine
//! does not throttle screens that cost little). When a pass over its
//! screens costs more than that allows at the broadcaster's pace, the gap
//! between passes grows (newer frames replace the ones waiting), so the
//! runtime keeps the rest for votes; the gap is logged and exported as
//! `sse_frame_gap_seconds`. A pass takes the counts as they are when it
//! starts, not as the waiting frame had them: with a grown gap, the frame
//! would add up to the broadcaster's interval to every vote's way to a screen.

use std::io;
use std::net::TcpStream as StdStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::admission::StreamSlot;
use crate::actors::broadcaster::{BroadcasterHandle, FRAME_INTERVAL};
use crate::http::attention::{self, Attention};
use crate::metrics::Metrics;
use writer::Writer;

mod sys;
mod writer;

/// Writer loops. Two cores: two loops can write at once, and each one's
/// passes stay short enough to leave the runtime to votes in between.
pub const FANOUT_LOOPS: usize = 2;
/// Sockets waiting to join one loop. Request path: the handing-over
/// connection waits up to `JOIN_WAIT`, then closes (the screen reconnects).
pub const JOIN_QUEUE: usize = 1024;
pub const JOIN_WAIT: Duration = Duration::from_secs(1);
/// Share of one core one loop may spend writing frames: two loops take at
/// most 0.8 of the two cores, what 18,000 screens need at 10 frames/s on
/// this machine's floor (~4 µs a write), and leave the rest to votes.
/// Beyond it the frame gap grows.
pub const WRITE_SHARE: f64 = 0.4;
/// The kernel send buffer of a screen's socket (Linux doubles it): about
/// 100 frames of 300 bytes. A screen further behind skips to the newest counts, and a
/// stalled screen pins no more kernel memory than this.
pub const SCREEN_SEND_BUFFER_BYTES: usize = 16 * 1024;

/// Longest silence before a keep-alive comment (docs/contract.md#get-stream).
pub const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Tells EventSource how long to wait before reconnecting.
pub const RETRY_FRAME: &[u8] = b"retry: 2000\n\n";
pub const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// A screen admitted to the stream budget: its slot, and its place in
/// `sse_clients`, both given back when the socket closes.
pub struct Ticket {
    _slot: StreamSlot,
    metrics: Arc<Metrics>,
}

impl Ticket {
    pub fn new(slot: StreamSlot, metrics: Arc<Metrics>) -> Ticket {
        metrics.sse_clients.inc();
        Ticket {
            _slot: slot,
            metrics,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.metrics.sse_clients.dec();
    }
}

/// One connection's way out of hyper, shared by its task, its socket
/// (`Tap`) and its requests (an extension): `/stream` arms it with the
/// screen's ticket; the flush after the head raises `FLUSHED` on the
/// connection's attention.
pub struct Handover {
    armed: AtomicBool,
    ticket: Mutex<Option<Ticket>>,
    attention: Arc<Attention>,
}

impl Handover {
    pub fn new(attention: Arc<Attention>) -> Arc<Handover> {
        Arc::new(Handover {
            armed: AtomicBool::new(false),
            ticket: Mutex::new(None),
            attention,
        })
    }

    /// The response being written is a stream's head: hand the socket over
    /// once it is flushed.
    pub fn arm(&self, ticket: Ticket) {
        // Never held across an await; a poisoned lock still holds the ticket.
        *self.ticket.lock().unwrap_or_else(|e| e.into_inner()) = Some(ticket);
        self.armed.store(true, Ordering::Release);
    }

    pub fn take(&self) -> Option<Ticket> {
        self.ticket.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn on_flush(&self) {
        // Every answer's flush passes here: a load, not a write, unless armed.
        if self.armed.load(Ordering::Acquire) && self.armed.swap(false, Ordering::AcqRel) {
            self.attention.raise(attention::FLUSHED);
        }
    }
}

/// The socket as hyper sees it: every call passes through; a flush after
/// `Handover::arm` tells the connection's task that the head is out
/// (hyper's `pipeline_flush` must stay off: with it hyper skips flushes).
pub struct Tap {
    stream: TcpStream,
    handover: Arc<Handover>,
}

impl Tap {
    pub fn new(stream: TcpStream, handover: Arc<Handover>) -> Tap {
        Tap { stream, handover }
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes its socket only once its own buffer is empty.
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        self.handover.on_flush();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A socket on its way to a loop.
struct Joining {
    stream: StdStream,
    ticket: Ticket,
}

/// Where connections hand their stream sockets over.
#[derive(Clone)]
pub struct Fanout {
    joins: Arc<[mpsc::Sender<Joining>]>,
    next: Arc<AtomicUsize>,
}

impl Fanout {
    /// Starts the loops; they close every screen and end on `shutdown`.
    pub fn spawn(
        broadcaster: &BroadcasterHandle,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Fanout, Vec<JoinHandle<()>>) {
        let mut joins = Vec::with_capacity(FANOUT_LOOPS);
        let mut tasks = Vec::with_capacity(FANOUT_LOOPS);
        metrics.sse_frame_gap.set(FRAME_INTERVAL.as_secs_f64());
        for _ in 0..FANOUT_LOOPS {
            let (tx, rx) = mpsc::channel(JOIN_QUEUE);
            joins.push(tx);
            let writer = Writer::new(broadcaster.clone(), metrics.clone());
            tasks.push(tokio::spawn(writer.run(rx, shutdown.clone())));
        }
        let fanout = Fanout {
            joins: joins.into(),
            next: Arc::default(),
        };
        (fanout, tasks)
    }

    /// Takes over a stream's socket, its head written. Round robin: the
    /// loops stay about equal whatever leaves.
    pub async fn join(&self, stream: TcpStream, ticket: Ticket) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => return debug!(error = %e, "stream socket lost at handover"),
        };
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.joins.len();
        let joining = Joining { stream, ticket };
        if let Err(e) = self.joins[at].send_timeout(joining, JOIN_WAIT).await {
            // Dropped: the socket closes and its slot goes back.
            warn!(error = %e, "fan-out busy, a screen was closed at handover");
        }
    }
}

#[cfg(test)]
mod tests;
