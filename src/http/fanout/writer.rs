//! One writer loop of the fan-out: its screens' sockets in an epoll set,
//! each pass's frames chunk-encoded once and written with one plain
//! `write` per screen, skip-to-newest for a screen whose buffer is full,
//! and the write budget that spaces the passes (see fanout.rs).

use std::io::{self, Read, Write};
use std::net::TcpStream as StdStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::sys::{Epoll, READ_EVENTS, WRITE_EVENTS, set_send_buffer, thread_cpu, watch};
use super::{Joining, KEEPALIVE_FRAME, RETRY_FRAME, SSE_KEEPALIVE, Ticket, WRITE_SHARE};
use crate::actors::broadcaster::{BroadcasterHandle, FRAME_INTERVAL};
use crate::metrics::Metrics;

/// Sockets written between two yields to the runtime, so a pass over
/// thousands of screens never holds a worker for more than ~1 ms.
const YIELD_EVERY: usize = 256;
/// Readiness events taken from the kernel per round.
const MAX_EVENTS: usize = 256;
/// A screen has nothing to say after its request; a client that keeps
/// sending is closed once it sent this much.
const MAX_INBOUND_BYTES: usize = 4096;
/// How often a grown frame gap is logged while it lasts.
const GAP_LOG_EVERY: Duration = Duration::from_secs(10);
/// The end of a chunked body: sent to every screen at shutdown.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// One screen in a loop.
struct Screen {
    stream: StdStream,
    _ticket: Ticket,
    /// The unwritten end of a frame the socket took only in part: it is
    /// finished before anything else is written (chunk framing).
    rest: Option<Bytes>,
    /// Frames were skipped: the next write is the newest counts.
    missed: bool,
    /// Watching for room in the send buffer.
    waiting: bool,
    inbound: usize,
}

/// What one `write` did.
enum Sent {
    All,
    Part(Bytes),
    Full,
    Gone,
}

fn send(stream: &StdStream, frame: &Bytes) -> Sent {
    // std's `write` on Linux is `send(MSG_NOSIGNAL)`: a gone peer is an
    // error, never a signal; the socket is non-blocking.
    match (&*stream).write(frame) {
        Ok(n) if n == frame.len() => Sent::All,
        Ok(0) => Sent::Gone,
        Ok(n) => Sent::Part(frame.slice(n..)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Full,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Sent::Full,
        Err(_) => Sent::Gone,
    }
}

/// `data` as one HTTP/1.1 chunk, as hyper frames a body's data.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::fmt::Write as _;
    let mut size = String::with_capacity(8);
    let _ = write!(size, "{:X}\r\n", data.len());
    out.extend_from_slice(size.as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// What a frame carries: a newer frame of a kind replaces an older one
/// still waiting for the next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Votes,
    Status,
    /// Votes and status at once (after the loop lagged).
    Both,
    KeepAlive,
}

fn kind_of(frame: &[u8]) -> Kind {
    if frame.starts_with(b"event: votes") {
        if frame.windows(13).any(|w| w == b"event: status") {
            Kind::Both
        } else {
            Kind::Votes
        }
    } else if frame.starts_with(b"event: status") {
        Kind::Status
    } else {
        Kind::KeepAlive
    }
}

/// One writer loop: its screens (a slab indexed by epoll token), the
/// frames waiting for the next pass, and the write budget's clock.
pub(super) struct Writer {
    broadcaster: BroadcasterHandle,
    metrics: Arc<Metrics>,
    screens: Vec<Option<Screen>>,
    free: Vec<usize>,
    epoll: RawFd,
    /// Frames since the last pass, at most one per kind.
    waiting: Vec<(Kind, Bytes)>,
    /// The newest counts as a chunk, for screens that skipped frames;
    /// cleared by every pass.
    catch_up: Option<Bytes>,
    last_pass: Instant,
    /// The write budget: no pass before this.
    not_before: Instant,
    /// The gap is grown now.
    throttled: bool,
    /// When the gap was last logged (at most every `GAP_LOG_EVERY`).
    gap_logged: Option<Instant>,
}

impl Writer {
    pub(super) fn new(broadcaster: BroadcasterHandle, metrics: Arc<Metrics>) -> Writer {
        Writer {
            broadcaster,
            metrics,
            screens: Vec::new(),
            free: Vec::new(),
            epoll: -1,
            waiting: Vec::with_capacity(4),
            catch_up: None,
            last_pass: Instant::now(),
            not_before: Instant::now(),
            throttled: false,
            gap_logged: None,
        }
    }

    pub(super) async fn run(
        mut self,
        mut joins: mpsc::Receiver<Joining>,
        shutdown: CancellationToken,
    ) {
        // SAFETY: the epoll descriptor is owned by `Epoll`, which the
        // `AsyncFd` owns until it is dropped; nothing replaces or closes it.
        let registered = |epoll| unsafe {
            AsyncFd::register_with_interest(epoll, Interest::READABLE).map_err(io::Error::from)
        };
        let epoll = match Epoll::new().and_then(registered) {
            Ok(epoll) => epoll,
            Err(e) => {
                error!(error = %e, "fan-out loop cannot start: screens are closed at handover");
                drop(joins);
                return;
            }
        };
        self.epoll = epoll.as_raw_fd();
        let (_, mut frames) = self.broadcaster.subscribe();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        loop {
            let pass_due = !self.waiting.is_empty();
            let keepalive_at = self.last_pass + SSE_KEEPALIVE;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                received = frames.recv() => match received {
                    Ok(frame) => self.offer(frame),
                    Err(RecvError::Lagged(_)) => {
                        // Skip the backlog: the newest frames are full snapshots.
                        self.metrics.sse_lagged.inc();
                        self.waiting.clear();
                        self.offer(self.broadcaster.latest());
                    }
                    // The broadcaster is gone: shutting down.
                    Err(RecvError::Closed) => break,
                },
                Some(joining) = joins.recv() => self.join(joining),
                ready = epoll.readable() => {
                    let Ok(mut guard) = ready else { break };
                    let n = epoll.get_ref().ready(&mut events);
                    // More may be ready than one round takes: come back.
                    if n < MAX_EVENTS {
                        guard.clear_ready();
                    }
                    drop(guard);
                    for event in &events[..n] {
                        let (flags, token) = (event.events, event.u64);
                        self.event(token as usize, flags);
                    }
                }
                _ = tokio::time::sleep_until(self.not_before), if pass_due => self.pass().await,
                _ = tokio::time::sleep_until(keepalive_at), if !pass_due => {
                    self.offer(Bytes::from_static(KEEPALIVE_FRAME));
                }
            }
        }
        self.close_all();
    }

    fn offer(&mut self, frame: Bytes) {
        let kind = kind_of(&frame);
        match kind {
            Kind::KeepAlive if !self.waiting.is_empty() => return,
            Kind::Both => self.waiting.clear(),
            _ => self
                .waiting
                .retain(|(k, _)| *k != kind && *k != Kind::KeepAlive),
        }
        self.waiting.push((kind, frame));
    }

    fn catch_up(&mut self) -> Bytes {
        if let Some(frame) = &self.catch_up {
            return frame.clone();
        }
        let mut out = Vec::new();
        chunk(&mut out, &self.broadcaster.latest());
        let frame = Bytes::from(out);
        self.catch_up = Some(frame.clone());
        frame
    }

    fn join(&mut self, joining: Joining) {
        let Joining { stream, ticket } = joining;
        set_send_buffer(&stream);
        let at = self.free.pop().unwrap_or(self.screens.len());
        if let Err(e) = watch(
            self.epoll,
            libc::EPOLL_CTL_ADD,
            stream.as_raw_fd(),
            READ_EVENTS,
            at,
        ) {
            if at < self.screens.len() {
                self.free.push(at);
            }
            return debug!(error = %e, "screen not watched, closed");
        }
        // The opening, as two chunks in one write: the retry hint, then the
        // current counts and status.
        let mut opening = Vec::new();
        chunk(&mut opening, RETRY_FRAME);
        chunk(&mut opening, &self.broadcaster.latest());
        let screen = Screen {
            stream,
            _ticket: ticket,
            rest: None,
            missed: false,
            waiting: false,
            inbound: 0,
        };
        if at == self.screens.len() {
            self.screens.push(Some(screen));
        } else {
            self.screens[at] = Some(screen);
        }
        self.write(at, &Bytes::from(opening));
    }

    /// Writes `frame` to screen `at`, or notes what is left.
    fn write(&mut self, at: usize, frame: &Bytes) {
        let Some(screen) = self.screens.get_mut(at).and_then(Option::as_mut) else {
            return;
        };
        match send(&screen.stream, frame) {
            Sent::All => {}
            Sent::Part(rest) => {
                screen.rest = Some(rest);
                self.wait_for_room(at);
            }
            Sent::Full => {
                screen.missed = true;
                self.metrics.sse_lagged.inc();
                self.wait_for_room(at);
            }
            Sent::Gone => self.close(at),
        }
    }

    /// One pass: the waiting frames, chunk-encoded once, to every screen
    /// that has room; then the write budget sets the next pass's time.
    async fn pass(&mut self) {
        let started = Instant::now();
        let mut out = Vec::new();
        // A frame that waited for the budget is up to a broadcaster's
        // interval old: the counts are taken again now, so a grown gap
        // does not add the broadcaster's pace to every vote's way to a screen.
        for (kind, frame) in std::mem::take(&mut self.waiting) {
            chunk(&mut out, &self.refreshed(kind, frame));
        }
        let out = Bytes::from(out);
        self.catch_up = None;
        // CPU time is the thread's: summed between yields (the task may
        // move to another worker at each).
        let mut cpu = Duration::ZERO;
        let mut since = thread_cpu();
        for at in 0..self.screens.len() {
            if at % YIELD_EVERY == YIELD_EVERY - 1 {
                cpu += thread_cpu().saturating_sub(since);
                tokio::task::yield_now().await;
                since = thread_cpu();
            }
            let Some(screen) = self.screens[at].as_mut() else {
                continue;
            };
            if screen.rest.is_some() || screen.waiting {
                // No room last time: it gets the newest counts when it drains.
                if !screen.missed {
                    screen.missed = true;
                    self.metrics.sse_lagged.inc();
                }
                continue;
            }
            self.write(at, &out);
        }
        cpu += thread_cpu().saturating_sub(since);
        self.last_pass = Instant::now();
        self.budget(started, cpu);
    }

    /// `frame` with the counts as they are now.
    fn refreshed(&self, kind: Kind, frame: Bytes) -> Bytes {
        match kind {
            Kind::Votes => self.broadcaster.votes_now(),
            Kind::Both => self.broadcaster.latest(),
            Kind::Status | Kind::KeepAlive => frame,
        }
    }

    /// The write budget: a pass that cost `cpu` allows the next one
    /// `cpu / WRITE_SHARE` after this one's start.
    fn budget(&mut self, started: Instant, cpu: Duration) {
        let gap = cpu.div_f64(WRITE_SHARE);
        self.not_before = started + gap;
        self.metrics
            .sse_frame_gap
            .set(gap.max(FRAME_INTERVAL).as_secs_f64());
        let screens = self.screens.len() - self.free.len();
        // One line per GAP_LOG_EVERY at most, whether it grows or recovers.
        let may_log = self
            .gap_logged
            .is_none_or(|at| at.elapsed() >= GAP_LOG_EVERY);
        if gap > FRAME_INTERVAL {
            self.throttled = true;
            if may_log {
                warn!(
                    gap_ms = gap.as_millis() as u64,
                    pass_cpu_ms = cpu.as_millis() as u64,
                    screens,
                    "screens need more writes than the budget allows: the frame gap grows"
                );
                self.gap_logged = Some(Instant::now());
            }
        } else if self.throttled && may_log {
            self.throttled = false;
            info!(screens, "frame gap back to the broadcaster's pace");
            self.gap_logged = Some(Instant::now());
        }
    }

    fn event(&mut self, at: usize, flags: u32) {
        if flags & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            return self.close(at);
        }
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 && !self.read(at) {
            return self.close(at);
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.drained(at);
        }
    }

    /// Reads what a screen sent; false when its peer is gone or it keeps
    /// talking.
    fn read(&mut self, at: usize) -> bool {
        let Some(screen) = self.screens.get_mut(at).and_then(Option::as_mut) else {
            return true;
        };
        let mut buf = [0u8; 512];
        match (&screen.stream).read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                screen.inbound += n;
                screen.inbound <= MAX_INBOUND_BYTES
            }
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }

    /// Room in a screen's send buffer: the rest of its frame, then the
    /// newest counts if it skipped any.
    fn drained(&mut self, at: usize) {
        let catch_up = self.catch_up();
        let Some(screen) = self.screens.get_mut(at).and_then(Option::as_mut) else {
            return;
        };
        if let Some(rest) = screen.rest.take() {
            match send(&screen.stream, &rest) {
                Sent::All => {}
                Sent::Part(rest) => return screen.rest = Some(rest),
                Sent::Full => return screen.rest = Some(rest),
                Sent::Gone => return self.close(at),
            }
        }
        if screen.missed {
            match send(&screen.stream, &catch_up) {
                Sent::All => screen.missed = false,
                Sent::Part(rest) => {
                    screen.missed = false;
                    return screen.rest = Some(rest);
                }
                Sent::Full => return,
                Sent::Gone => return self.close(at),
            }
        }
        screen.waiting = false;
        let fd = screen.stream.as_raw_fd();
        if watch(self.epoll, libc::EPOLL_CTL_MOD, fd, READ_EVENTS, at).is_err() {
            self.close(at);
        }
    }

    fn wait_for_room(&mut self, at: usize) {
        let Some(screen) = self.screens.get_mut(at).and_then(Option::as_mut) else {
            return;
        };
        if screen.waiting {
            return;
        }
        screen.waiting = true;
        let fd = screen.stream.as_raw_fd();
        if watch(self.epoll, libc::EPOLL_CTL_MOD, fd, WRITE_EVENTS, at).is_err() {
            self.close(at);
        }
    }

    /// Closing the socket takes it out of the epoll set; the ticket gives
    /// the slot back.
    fn close(&mut self, at: usize) {
        if let Some(slot) = self.screens.get_mut(at)
            && slot.take().is_some()
        {
            self.free.push(at);
        }
    }

    /// Shutdown: every stream ends as hyper ended it, with the last chunk
    /// (unless a frame is half written), then closes.
    fn close_all(&mut self) {
        for screen in self.screens.drain(..).flatten() {
            if screen.rest.is_none() {
                let _ = (&screen.stream).write(LAST_CHUNK);
            }
        }
        self.free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::broadcaster::{Offline, spawn_offline};
    use crate::poll::{Counts, Snapshot};

    #[tokio::test]
    async fn a_pass_writes_the_counts_as_they_are_not_as_the_waiting_frame_had_them() {
        let Offline {
            handle,
            view,
            metrics,
            shutdown,
            ..
        } = spawn_offline();
        let writer = Writer::new(handle.clone(), metrics);
        let waited = handle.votes_now();
        let snapshot = Snapshot {
            counts: Counts([7, 0, 0, 0, 0, 0, 0, 0]),
            seq: 1,
            local: 0,
        };
        assert!(view.offer(snapshot));
        let frame = writer.refreshed(kind_of(&waited), waited.clone());
        assert_ne!(frame, waited);
        assert!(
            std::str::from_utf8(&frame)
                .expect("UTF-8")
                .contains(r#""count":7"#),
            "{frame:?}"
        );
        let status = Bytes::from_static(b"event: status\ndata: {}\n\n");
        assert_eq!(writer.refreshed(kind_of(&status), status.clone()), status);
        shutdown.cancel();
    }
}
