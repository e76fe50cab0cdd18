//! The log's way out. A line is copied into a buffer in memory, and a thread
//! of its own writes what gathered with one `write(2)` about every `GATHER`.
//! Written straight to stdout, every access-log line cost a request a system
//! call of its own (docs/benchmarks.md, "The access log"), and a stdout that
//! stopped draining (a stalled log collector) blocked the runtime's threads
//! and every request with them.
//!
//! Bounded: with `LIMIT` bytes waiting, a new line is dropped whole and
//! counted, and the log says how many once it drains again. A line reaches
//! stdout within about `GATHER` of being logged; `Flusher` writes what is
//! left when the process ends (a `SIGKILL` loses at most that much), waiting
//! up to `EXIT_WAIT` for a stdout that does not drain.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather before writing them.
pub const GATHER: Duration = Duration::from_millis(10);
/// Most bytes waiting to be written; ~20,000 access-log lines.
pub const LIMIT: usize = 4 << 20;
/// How long the end of the process waits for the last lines to be written.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Where the subscriber writes its lines (`fmt().with_writer(sink)`).
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
    limit: usize,
}

/// Owns the writer thread: dropping it writes every waiting line and ends it.
pub struct Flusher {
    shared: Arc<Shared>,
    /// Disconnected once the writer thread has ended.
    ended: Receiver<()>,
    exit_wait: Duration,
}

struct Shared {
    waiting: Mutex<Waiting>,
    /// Rung when the first line goes into an empty buffer, and at the end.
    ready: Condvar,
}

#[derive(Default)]
struct Waiting {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
}

impl Shared {
    /// A panic elsewhere while holding the lock leaves whole lines behind
    /// (a line is appended in one call), so the buffer is still good.
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the writer thread, writing to `out`.
pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<(LogSink, Flusher)> {
    spawn_with(out, LIMIT, GATHER, EXIT_WAIT)
}

fn spawn_with<W: Write + Send + 'static>(
    out: W,
    limit: usize,
    gather: Duration,
    exit_wait: Duration,
) -> io::Result<(LogSink, Flusher)> {
    let shared = Arc::new(Shared {
        waiting: Mutex::new(Waiting::default()),
        ready: Condvar::new(),
    });
    let writer = Arc::clone(&shared);
    let (ending, ended) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            write_out(&writer, out, gather);
            drop(ending);
        })?;
    let flusher = Flusher {
        shared: Arc::clone(&shared),
        ended,
        exit_wait,
    };
    Ok((LogSink { shared, limit }, flusher))
}

fn write_out<W: Write>(shared: &Shared, mut out: W, gather: Duration) {
    let mut batch = Vec::new();
    loop {
        let (dropped, closed) = {
            let waiting = shared
                .ready
                .wait_while(shared.lock(), |w| {
                    w.lines.is_empty() && w.dropped == 0 && !w.closed
                })
                .unwrap_or_else(PoisonError::into_inner);
            // More lines join for `gather`, unless the end comes first.
            let (mut waiting, _) = shared
                .ready
                .wait_timeout_while(waiting, gather, |w| !w.closed)
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut waiting.lines, &mut batch);
            (std::mem::take(&mut waiting.dropped), waiting.closed)
        };
        // Nowhere else to report a failing stdout: its lines are lost.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if dropped > 0 {
            // Through the subscriber, so it has the log's format; it is
            // written on the next round.
            tracing::warn!(dropped, "log lines dropped: stdout did not keep up");
        }
        if closed && shared.lock().lines.is_empty() {
            return;
        }
    }
}

impl Write for &LogSink {
    /// The subscriber hands over each line in one call.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut waiting = self.shared.lock();
        if waiting.lines.len() + line.len() > self.limit {
            waiting.dropped += 1;
        } else {
            let first = waiting.lines.is_empty();
            waiting.lines.extend_from_slice(line);
            if first {
                self.shared.ready.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = &'a LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Flusher {
    /// A stdout that never drains keeps the thread in its write: the
    /// process then ends after `exit_wait` without the last lines.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        let _ = self.ended.recv_timeout(self.exit_wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for stdout: what was written, and how many writes.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Out {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut out = self.0.lock().unwrap();
            out.0.extend_from_slice(bytes);
            out.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Out {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn lines_come_out_in_order_and_together_by_the_end() {
        let out = Out::default();
        let (sink, flusher) =
            spawn_with(out.clone(), LIMIT, Duration::from_secs(60), EXIT_WAIT).unwrap();
        for i in 0..1000 {
            (&sink).write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        // The gathering wait is a minute: only the end writes them, at once.
        drop(flusher);
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), expected);
        assert_eq!(out.writes(), 1, "one write for the gathered lines");
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_and_keeps_the_rest() {
        let out = Out::default();
        let (sink, flusher) =
            spawn_with(out.clone(), 10, Duration::from_secs(60), EXIT_WAIT).unwrap();
        for line in ["aaaa\n", "bbbb\n", "cccc\n", "dd\n"] {
            (&sink).write_all(line.as_bytes()).unwrap();
        }
        drop(flusher);
        // No subscriber here, so the count's own warning goes nowhere.
        assert_eq!(out.text(), "aaaa\nbbbb\n");
    }

    #[test]
    fn a_line_is_written_without_waiting_for_the_end() {
        let out = Out::default();
        let (sink, _flusher) = spawn_with(out.clone(), LIMIT, Duration::ZERO, EXIT_WAIT).unwrap();
        (&sink).write_all(b"now\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            thread::yield_now();
        }
        assert_eq!(out.text(), "now\n");
    }

    /// A stdout whose every write blocks until the test ends.
    struct Stuck(Mutex<mpsc::Receiver<()>>);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_end_does_not_wait_for_a_stdout_that_never_drains() {
        let (release, stuck) = mpsc::channel();
        let out = Stuck(Mutex::new(stuck));
        let (sink, flusher) =
            spawn_with(out, LIMIT, Duration::ZERO, Duration::from_millis(50)).unwrap();
        (&sink).write_all(b"never written\n").unwrap();
        // Without the bound this drop would wait for `release` forever.
        drop(flusher);
        drop(release);
    }
}
