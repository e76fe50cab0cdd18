//! The system calls of the fan-out's loops: the epoll set of a loop, the
//! send buffer of a screen's socket, the thread's CPU clock.

use std::io;
use std::net::TcpStream as StdStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::SCREEN_SEND_BUFFER_BYTES;

/// The epoll set of one loop: screens' sockets, readable (a peer closing)
/// always, writable while a screen waits for room.
pub(super) struct Epoll(OwnedFd);

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

pub(super) const READ_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
pub(super) const WRITE_EVENTS: u32 = READ_EVENTS | libc::EPOLLOUT as u32;

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; the result is checked before it is owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Ready events now, without waiting (the runtime waits for us).
    pub(super) fn ready(&self, events: &mut [libc::epoll_event]) -> usize {
        let len = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the kernel writes at most `len` events into `events`.
        let n = unsafe { libc::epoll_wait(self.as_raw_fd(), events.as_mut_ptr(), len, 0) };
        usize::try_from(n).unwrap_or(0)
    }
}

/// Adds (`EPOLL_CTL_ADD`) or changes (`EPOLL_CTL_MOD`) what `epoll` watches
/// on `fd`, and the token its events carry (the screen's slab index).
pub(super) fn watch(
    epoll: RawFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    token: usize,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: token as u64,
    };
    // SAFETY: `event` lives across the call; the loop owns both
    // descriptors and keeps the epoll set open while it runs.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time of the calling thread.
pub(super) fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

pub(super) fn set_send_buffer(stream: &StdStream) {
    let bytes = libc::c_int::try_from(SCREEN_SEND_BUFFER_BYTES).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value is a c_int that lives across the call.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
