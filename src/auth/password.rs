//! Password hashes exactly as RabbitMQ stores them: `password_hash` is base64 of a 4-byte salt
//! followed by H(salt ++ utf-8 password), with H named by `hashing_algorithm`
//! (rabbit_password_hashing_sha256 by default, sha512, or the legacy md5). An empty hash means
//! the user cannot log in with a password, as after `rabbitmqctl clear_password`.
//!
//! Verification compares in constant time. New hashes take their salt from the kernel
//! (getrandom(2), or /dev/urandom on kernels without it) and are never md5.

use super::base64;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// Bytes of salt in front of the digest (RabbitMQ draws one random 32-bit integer).
pub const SALT_BYTES: usize = 4;

/// The `hashing_algorithm` of a user, named as RabbitMQ's modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashingAlgorithm {
    Sha256,
    Sha512,
    /// Users created before RabbitMQ 3.6; verified, never generated.
    Md5,
}

impl HashingAlgorithm {
    /// The algorithm RabbitMQ 3.6+ uses for new users.
    pub const DEFAULT: HashingAlgorithm = HashingAlgorithm::Sha256;

    /// The module name used in definitions files.
    pub fn name(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// Parses a module name; other modules (a custom hashing plugin) are unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512, Self::Md5]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// Digest length in bytes.
    pub fn digest_bytes(self) -> usize {
        match self {
            HashingAlgorithm::Sha256 => 32,
            HashingAlgorithm::Sha512 => 64,
            HashingAlgorithm::Md5 => 16,
        }
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            HashingAlgorithm::Sha256 => run::<Sha256>(salt, password),
            HashingAlgorithm::Sha512 => run::<Sha512>(salt, password),
            HashingAlgorithm::Md5 => run::<Md5>(salt, password),
        }
    }
}

impl fmt::Display for HashingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a stored hash or a request for a new one was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// `password_hash` is not base64.
    NotBase64,
    /// Not salt + one digest of the named algorithm.
    WrongLength {
        algorithm: HashingAlgorithm,
        bytes: usize,
    },
    /// New hashes are never md5.
    WeakAlgorithm,
    /// The kernel gave no random bytes for the salt.
    NoRandomness(String),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::NotBase64 => f.write_str("password_hash is not valid base64"),
            PasswordError::WrongLength { algorithm, bytes } => write!(
                f,
                "password_hash decodes to {bytes} bytes; {algorithm} needs {}",
                SALT_BYTES + algorithm.digest_bytes()
            ),
            PasswordError::WeakAlgorithm => f.write_str("new password hashes are never md5"),
            PasswordError::NoRandomness(e) => write!(f, "no random bytes for a salt: {e}"),
        }
    }
}

/// A stored password: salt ++ digest, or nothing (password login refused).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: HashingAlgorithm,
    /// Empty, or exactly SALT_BYTES + digest_bytes.
    salted: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    // Never print hash bytes into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("algorithm", &self.algorithm)
            .field("set", &!self.salted.is_empty())
            .finish()
    }
}

impl PasswordHash {
    /// No password: every password login is refused (`rabbitmqctl clear_password`).
    pub fn none(algorithm: HashingAlgorithm) -> Self {
        PasswordHash {
            algorithm,
            salted: Vec::new(),
        }
    }

    /// Hashes `password` with a fresh random salt.
    pub fn generate(algorithm: HashingAlgorithm, password: &[u8]) -> Result<Self, PasswordError> {
        let salt = random_salt()?;
        Self::with_salt(algorithm, salt, password)
    }

    /// Hashes `password` with a given salt (deterministic; for tests and known vectors).
    pub fn with_salt(
        algorithm: HashingAlgorithm,
        salt: [u8; SALT_BYTES],
        password: &[u8],
    ) -> Result<Self, PasswordError> {
        if algorithm == HashingAlgorithm::Md5 {
            return Err(PasswordError::WeakAlgorithm);
        }
        let mut salted = salt.to_vec();
        salted.extend_from_slice(&algorithm.digest(&salt, password));
        Ok(PasswordHash { algorithm, salted })
    }

    /// Reads `password_hash` as found in a definitions file.
    pub fn from_base64(algorithm: HashingAlgorithm, text: &str) -> Result<Self, PasswordError> {
        let salted = base64::decode(text).map_err(|_| PasswordError::NotBase64)?;
        if !salted.is_empty() && salted.len() != SALT_BYTES + algorithm.digest_bytes() {
            return Err(PasswordError::WrongLength {
                algorithm,
                bytes: salted.len(),
            });
        }
        Ok(PasswordHash { algorithm, salted })
    }

    /// `password_hash` as written in a definitions file ("" for no password).
    pub fn to_base64(&self) -> String {
        base64::encode(&self.salted)
    }

    pub fn algorithm(&self) -> HashingAlgorithm {
        self.algorithm
    }

    /// False when password login is refused whatever the password.
    pub fn is_set(&self) -> bool {
        !self.salted.is_empty()
    }

    /// True when `password` hashes to the stored digest. The digest comparison takes the same
    /// time wherever the first difference is.
    pub fn verify(&self, password: &[u8]) -> bool {
        if self.salted.len() < SALT_BYTES {
            return false;
        }
        let (salt, stored) = self.salted.split_at(SALT_BYTES);
        constant_time_eq(stored, &self.algorithm.digest(salt, password))
    }
}

/// Compares two byte strings without an early exit on the first difference. Lengths are not
/// secret (they follow from the algorithm), so unequal lengths return at once.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A salt from the kernel's CSPRNG (see `crate::entropy` for why the raw syscall).
fn random_salt() -> Result<[u8; SALT_BYTES], PasswordError> {
    let mut salt = [0u8; SALT_BYTES];
    crate::entropy::fill(&mut salt).map_err(|e| PasswordError::NoRandomness(e.to_string()))?;
    Ok(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash computed by hand (salt 01020304, sha256 of salt ++ "guest") verifies, and the
    /// base64 text is laid out as salt then digest.
    #[test]
    fn known_vector_matches_hand_computed_digest() {
        let salt = [1, 2, 3, 4];
        let h = PasswordHash::with_salt(HashingAlgorithm::Sha256, salt, b"guest").unwrap();
        let mut expected = salt.to_vec();
        expected.extend_from_slice(&Sha256::digest([&salt[..], b"guest"].concat()));
        assert_eq!(base64::decode(&h.to_base64()).unwrap(), expected);
        assert!(h.verify(b"guest"));
        assert!(!h.verify(b"guest "));
    }

    /// Generated hashes verify their own password only, and two of the same password differ
    /// (fresh salt each time).
    #[test]
    fn generated_hashes_verify_and_are_salted() {
        for alg in [HashingAlgorithm::Sha256, HashingAlgorithm::Sha512] {
            let a = PasswordHash::generate(alg, "pässwörd".as_bytes()).unwrap();
            let b = PasswordHash::generate(alg, "pässwörd".as_bytes()).unwrap();
            assert!(a.verify("pässwörd".as_bytes()));
            assert!(!a.verify(b"passwoerd"));
            assert!(!a.verify(b""));
            assert_ne!(a.to_base64(), b.to_base64(), "same salt twice");
            let back = PasswordHash::from_base64(alg, &a.to_base64()).unwrap();
            assert!(back.verify("pässwörd".as_bytes()));
        }
    }

    /// New md5 hashes are refused; stored ones still verify.
    #[test]
    fn md5_is_verify_only() {
        assert_eq!(
            PasswordHash::generate(HashingAlgorithm::Md5, b"x"),
            Err(PasswordError::WeakAlgorithm)
        );
        let salt = [9, 8, 7, 6];
        let mut salted = salt.to_vec();
        salted.extend_from_slice(&Md5::digest([&salt[..], b"erin-md5"].concat()));
        let h = PasswordHash::from_base64(HashingAlgorithm::Md5, &base64::encode(&salted)).unwrap();
        assert!(h.verify(b"erin-md5"));
        assert!(!h.verify(b"erin-md6"));
    }

    /// An empty hash refuses every password, including the empty one.
    #[test]
    fn empty_hash_means_no_password_login() {
        let h = PasswordHash::from_base64(HashingAlgorithm::Sha256, "").unwrap();
        assert!(!h.is_set());
        assert!(!h.verify(b""));
        assert!(!h.verify(b"anything"));
        assert_eq!(h.to_base64(), "");
        assert!(!PasswordHash::none(HashingAlgorithm::Sha512).verify(b""));
    }

    /// Hashes of the wrong size for their algorithm, or not base64, are refused at load.
    #[test]
    fn malformed_stored_hashes_are_refused() {
        let sha256 = HashingAlgorithm::Sha256;
        assert_eq!(
            PasswordHash::from_base64(sha256, "not base64!"),
            Err(PasswordError::NotBase64)
        );
        let short = base64::encode(&[0u8; 20]);
        assert_eq!(
            PasswordHash::from_base64(sha256, &short),
            Err(PasswordError::WrongLength {
                algorithm: sha256,
                bytes: 20
            })
        );
        let sha512_sized = base64::encode(&[0u8; 68]);
        assert!(PasswordHash::from_base64(sha256, &sha512_sized).is_err());
        assert!(PasswordHash::from_base64(HashingAlgorithm::Sha512, &sha512_sized).is_ok());
    }

    /// Module names round-trip and unknown ones are not guessed.
    #[test]
    fn algorithm_names() {
        for a in [
            HashingAlgorithm::Sha256,
            HashingAlgorithm::Sha512,
            HashingAlgorithm::Md5,
        ] {
            assert_eq!(HashingAlgorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(
            HashingAlgorithm::from_name("rabbit_password_hashing_bcrypt"),
            None
        );
    }

    /// Equal-length comparison is exact at every position.
    #[test]
    fn constant_time_eq_is_exact() {
        let a = [7u8; 32];
        assert!(constant_time_eq(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!constant_time_eq(&a, &b));
        }
        assert!(!constant_time_eq(&a, &a[..31]));
    }
}
