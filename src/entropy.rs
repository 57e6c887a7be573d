//! Random bytes from the kernel: the one place coney asks the OS for entropy (password salts,
//! direct reply-to keys).
//!
//! The raw getrandom(2) syscall, not glibc's `getrandom` wrapper: the wrapper appeared in
//! glibc 2.25, and linking it makes the rpm's binary unloadable on EL7 (glibc 2.17) —
//! scripts/build-release.sh fails to link rather than ship that. Kernels older than 3.17
//! (no getrandom) fall back to /dev/urandom.

use std::io;

/// Fills `buf` with bytes from the kernel's CSPRNG. Blocks only at early boot, until the pool
/// is initialised (flags 0), which a broker started by systemd never sees.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: the buffer is valid for `buf.len()` writable bytes.
    let n = unsafe { libc::syscall(libc::SYS_getrandom, buf.as_mut_ptr(), buf.len(), 0) };
    if n >= 0 && n as usize == buf.len() {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if n < 0 && err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // ENOSYS, or a short read (only possible above 256 bytes, which no caller asks for).
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf))
}

#[cfg(test)]
mod tests {
    /// Two draws of 16 bytes differ (equal only with probability 2^-128) and are not all zero:
    /// the syscall really wrote the buffer.
    #[test]
    fn draws_differ_and_are_written() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        super::fill(&mut a).expect("entropy");
        super::fill(&mut b).expect("entropy");
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 16]);
    }
}
