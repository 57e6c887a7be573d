//! Runtime configuration with RabbitMQ's defaults. Validated against `limits` at startup;
//! nothing else in the broker reads the environment or the command line.

use crate::limits;
use std::net::SocketAddr;
use std::path::PathBuf;

/// vm_memory_high_watermark: a fraction of the machine's (or cgroup's) memory, or bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryWatermark {
    Relative(f64),
    Absolute(u64),
}

impl std::str::FromStr for MemoryWatermark {
    type Err = String;
    /// "0.4" is relative; "512MB", "1GB", "200000000" are absolute (RabbitMQ's units).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('.') && !s.chars().any(|c| c.is_ascii_alphabetic()) {
            let f: f64 = s.parse().map_err(|_| format!("'{s}' is not a fraction"))?;
            if !(0.0..=1.0).contains(&f) {
                return Err(format!("relative watermark {f} is not between 0 and 1"));
            }
            return Ok(MemoryWatermark::Relative(f));
        }
        parse_bytes(s).map(MemoryWatermark::Absolute)
    }
}

/// Parses a byte count with RabbitMQ's optional units: kB/MB/GB (powers of 1000) and
/// KiB/MiB/GiB (powers of 1024), or a plain number.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count"))?;
    let mult: u64 = match unit.trim() {
        "" => 1,
        "k" | "kB" | "KB" => 1000,
        "KiB" | "Ki" => 1024,
        "M" | "MB" => 1000_000,
        "MiB" | "Mi" => 1024 * 1024,
        "G" | "GB" => 1000_000_000,
        "GiB" | "Gi" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown unit '{other}' in '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub default_user: String,
    pub default_pass: String,
    /// Users that may log in only from a loopback address (RabbitMQ: loopback_users).
    pub loopback_users: Vec<String>,
    pub heartbeat_secs: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub max_message_size: u64,
    pub handshake_timeout_secs: u64,
    /// Publishers are blocked above this much heap (RabbitMQ default: 0.4 of memory).
    pub vm_memory_high_watermark: MemoryWatermark,
    /// Publishers are blocked while the data dir's filesystem has less free space than this.
    pub disk_free_limit_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5672)),
            data_dir: PathBuf::from("data"),
            log_level: "info".into(),
            default_user: "guest".into(),
            default_pass: "guest".into(),
            loopback_users: vec!["guest".into()],
            heartbeat_secs: limits::HEARTBEAT_SECS,
            frame_max: limits::FRAME_MAX_BYTES,
            channel_max: limits::CHANNEL_MAX,
            max_message_size: limits::MESSAGE_SIZE_MAX_BYTES,
            handshake_timeout_secs: limits::HANDSHAKE_TIMEOUT_SECS,
            vm_memory_high_watermark: MemoryWatermark::Relative(0.4),
            disk_free_limit_bytes: 50_000_000,
        }
    }
}

impl Config {
    /// Checks values against the hard limits; returns a message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        use crate::protocol::constants::FRAME_MIN_SIZE;
        if self.frame_max < FRAME_MIN_SIZE || self.frame_max > limits::FRAME_MAX_BYTES {
            return Err(format!(
                "frame_max must be between {FRAME_MIN_SIZE} and {}",
                limits::FRAME_MAX_BYTES
            ));
        }
        if self.channel_max == 0 {
            return Err("channel_max must be at least 1".into());
        }
        if self.max_message_size == 0 || self.max_message_size > limits::MESSAGE_SIZE_MAX_BYTES {
            return Err(format!(
                "max_message_size must be between 1 and {}",
                limits::MESSAGE_SIZE_MAX_BYTES
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_and_watermarks_parse_with_rabbitmq_units() {
        assert_eq!(parse_bytes("50MB"), Ok(50_000_000));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("").is_err());
        assert_eq!("0.4".parse(), Ok(MemoryWatermark::Relative(0.4)));
        assert_eq!("200MB".parse(), Ok(MemoryWatermark::Absolute(200_000_000)));
        assert!("1.5".parse::<MemoryWatermark>().is_err());
    }
}
