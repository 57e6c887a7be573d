//! The login coney's own outbound connections use to reach this broker (a shovel end written
//! `amqp://`, which RabbitMQ serves over its direct, in-VM connection with full rights in the
//! vhost): a fixed user name and a random secret made at start and never stored or logged.
//! Accepted from a loopback peer only.

use std::sync::OnceLock;

/// Shown as the connection's user in logs and the management API.
pub const INTERNAL_USER: &str = "coney-internal";

static SECRET: OnceLock<String> = OnceLock::new();

/// The secret of this process (32 hex digits from the kernel's random source).
pub fn secret() -> &'static str {
    SECRET.get_or_init(|| {
        let mut b = [0u8; 16];
        if crate::entropy::fill(&mut b).is_err() {
            // No randomness, no internal login: an empty secret never matches (see below).
            return String::new();
        }
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

/// Whether a PLAIN login is the internal one (compared in constant time).
pub fn is_internal(user: &[u8], password: &[u8]) -> bool {
    let s = secret().as_bytes();
    if user != INTERNAL_USER.as_bytes() || s.is_empty() || password.len() != s.len() {
        return false;
    }
    password.iter().zip(s).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the exact user and secret match.
    #[test]
    fn only_the_secret_matches() {
        let s = secret().to_owned();
        assert_eq!(s.len(), 32);
        assert!(is_internal(INTERNAL_USER.as_bytes(), s.as_bytes()));
        assert!(!is_internal(b"guest", s.as_bytes()));
        assert!(!is_internal(INTERNAL_USER.as_bytes(), b""));
        let mut wrong = s.into_bytes();
        wrong[0] ^= 1;
        assert!(!is_internal(INTERNAL_USER.as_bytes(), &wrong));
    }
}
