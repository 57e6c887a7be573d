//! Signals as readiness: a handler that only writes the signal number to a non-blocking pipe
//! whose read end the reactor polls (the self-pipe trick). No other code runs in the handler.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe {
            libc::write(fd, &b as *const u8 as *const libc::c_void, 1);
        }
    }
}

pub(crate) struct Signals {
    read_fd: RawFd,
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT and SIGHUP and ignores SIGPIPE.
    pub(crate) fn install(registry: &Registry, token: Token) -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid two-element array for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WRITE_FD.store(fds[1], Ordering::Relaxed);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction with a valid handler and empty mask is well-formed.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        // SAFETY: setting SIGPIPE to SIG_IGN makes writes to closed sockets return EPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        registry.register(&mut SourceFd(&fds[0]), token, Interest::READABLE)?;
        Ok(Signals { read_fd: fds[0] })
    }

    /// Signals received since the last call.
    pub(crate) fn drain(&self, out: &mut Vec<i32>) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a local buffer of the stated length.
            let n = unsafe {
                libc::read(
                    self.read_fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n <= 0 {
                return;
            }
            out.extend(buf[..n as usize].iter().map(|&b| b as i32));
        }
    }
}
