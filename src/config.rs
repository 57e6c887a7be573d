//! Runtime configuration with RabbitMQ's defaults. Validated against `limits` at startup;
//! nothing else in the broker reads the environment or the command line.

use crate::limits;
use std::net::SocketAddr;
use std::path::PathBuf;

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
