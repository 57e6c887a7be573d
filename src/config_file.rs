//! The config file: `key = value` lines in the style of rabbitmq.conf, read into a `Config`.
//! Owns the key table (RabbitMQ's names where the concept is the same, plus coney's
//! `data_dir`) and errors that name the file, the line and the key. Reads only the file it is
//! given; the command line is applied afterwards (`config::Overrides`) so flags win.

use crate::config::{
    self, AuthMechanism, CertLoginFrom, Config, HttpListener, MemoryWatermark, TlsVerify,
    MANAGEMENT_DEFAULT, PROMETHEUS_DEFAULT,
};
use crate::limits;
use crate::protocol::constants::FRAME_MIN_SIZE;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A config file is a few kilobytes; refusing more bounds the read and the parse loop.
pub(crate) const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Longest handshake_timeout accepted: an hour. Longer only keeps dead sockets around.
pub(crate) const HANDSHAKE_TIMEOUT_MAX_MS: u64 = 3_600_000;

/// Every key `apply` accepts; `NAME` stands for any user name. The packaged coney.conf and
/// the man page must mention each (checked by a test).
#[cfg(test)]
const KEYS: [&str; 24] = [
    "listeners.tcp.default",
    "data_dir",
    "default_user",
    "default_pass",
    "default_vhost",
    "default_user_tags.NAME",
    "default_permissions.configure",
    "default_permissions.write",
    "default_permissions.read",
    "load_definitions",
    "loopback_users",
    "loopback_users.NAME",
    "heartbeat",
    "frame_max",
    "channel_max",
    "max_message_size",
    "connection_max",
    "handshake_timeout",
    "disk_free_limit.absolute",
    "vm_memory_high_watermark.relative",
    "vm_memory_high_watermark.absolute",
    "log.file",
    "log.level",
    "log.console",
];

/// A config file that cannot be read or used. Displayed as `FILE:LINE: KEY: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFileError {
    pub(crate) file: String,
    /// 1-based; 0 when the error is about the whole file.
    pub(crate) line: usize,
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads `path` into `config`. Returns warnings about settings that are accepted but have
/// no effect (the caller logs them once logging is up).
pub fn load(path: &Path, config: &mut Config) -> Result<Vec<String>, ConfigFileError> {
    let name = path.display().to_string();
    let whole = |message: String| ConfigFileError {
        file: name.clone(),
        line: 0,
        key: None,
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| whole(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(whole(format!(
            "larger than {CONFIG_FILE_BYTES_MAX} bytes; is this a config file?"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| whole("is not UTF-8 text".into()))?;
    parse(&name, &text, config)
}

/// Settings whose final value depends on several lines; resolved after the last line, the
/// way RabbitMQ's schema translations do.
#[derive(Default)]
struct Pending {
    loopback_none: bool,
    /// `loopback_users.NAME = true|false` in file order.
    loopback: Vec<(String, bool)>,
    memory_relative: Option<(f64, usize)>,
    memory_absolute: Option<(u64, usize)>,
    /// `default_user_tags.NAME = true|false` in file order.
    tags: Vec<(String, bool)>,
    /// `auth_mechanisms.SLOT = NAME`, the last line for a slot kept.
    mechanisms: Vec<(String, AuthMechanism)>,
    /// Static shovels: name → their keys as a shovel parameter's JSON value, and the line of
    /// the first key (for errors), in file order.
    shovels: Vec<(String, serde_json::Map<String, serde_json::Value>, usize)>,
}

/// Parses config text; `name` is used in errors. Public for tests and `--check-config`.
pub(crate) fn parse(
    name: &str,
    text: &str,
    config: &mut Config,
) -> Result<Vec<String>, ConfigFileError> {
    let mut pending = Pending::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |key: Option<&str>, message: String| ConfigFileError {
            file: name.to_string(),
            line,
            key: key.map(str::to_string),
            message,
        };
        // As in rabbitmq.conf, '#' starts a comment anywhere on the line, so values cannot
        // contain it.
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            // A mistyped password line must not be echoed into a log.
            let shown = if content.starts_with("default_pass") {
                "default_pass …"
            } else {
                content
            };
            return Err(err(
                None,
                format!("expected 'key = value', found '{shown}'"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(None, format!("'{key}' is not a key")));
        }
        if value.is_empty() {
            return Err(err(Some(key), "has no value".into()));
        }
        apply(key, value, line, config, &mut pending).map_err(|m| err(Some(key), m))?;
    }
    resolve_shovels(&mut pending, config).map_err(|(line, message)| ConfigFileError {
        file: name.to_string(),
        line,
        key: None,
        message,
    })?;
    Ok(resolve(pending, config))
}

/// Applies one setting. Range checks happen here so the error carries the line.
fn apply(
    key: &str,
    value: &str,
    line: usize,
    config: &mut Config,
    pending: &mut Pending,
) -> Result<(), String> {
    match key {
        "listeners.tcp.default" => config.listen = config::parse_listener(value)?,
        "data_dir" => config.data_dir = PathBuf::from(value),
        "default_user" => config.default_user = value.to_string(),
        "default_pass" => config.default_pass = config::Secret(value.to_string()),
        "default_vhost" => config.default_vhost = value.to_string(),
        "default_permissions.configure" => config.default_permissions[0] = pattern(value)?,
        "default_permissions.write" => config.default_permissions[1] = pattern(value)?,
        "default_permissions.read" => config.default_permissions[2] = pattern(value)?,
        "load_definitions" => config.load_definitions = Some(PathBuf::from(value)),
        "loopback_users" => match value {
            "none" => pending.loopback_none = true,
            _ => {
                return Err(format!(
                    "'{value}' is not 'none' (use loopback_users.NAME = true)"
                ))
            }
        },
        "heartbeat" => config.heartbeat_secs = parse_number(value, 0, u16::MAX)?,
        "frame_max" => {
            // RabbitMQ's 0 means "no limit"; coney's read buffer is sized by the largest
            // frame, so it has to have one.
            config.frame_max = parse_number(value, FRAME_MIN_SIZE, limits::FRAME_MAX_BYTES)?;
        }
        "channel_max" => {
            // 0 is "no limit" in AMQP and RabbitMQ: the protocol's own ceiling.
            config.channel_max = match parse_number(value, 0, u16::MAX)? {
                0 => u16::MAX,
                n => n,
            };
        }
        "max_message_size" => {
            config.max_message_size = parse_number(value, 1, limits::MESSAGE_SIZE_MAX_BYTES)?;
        }
        "connection_max" => {
            // RabbitMQ's `infinity` is coney's hard ceiling on connections.
            config.max_connections = match value {
                "infinity" => limits::CONNECTIONS_MAX,
                _ => parse_number(value, 0, limits::CONNECTIONS_MAX)?,
            };
        }
        "handshake_timeout" => {
            let ms = parse_number(value, 1, HANDSHAKE_TIMEOUT_MAX_MS)?;
            config.handshake_timeout_secs = ms.div_ceil(1000);
        }
        "disk_free_limit.absolute" => {
            config.disk_free_limit_bytes = config::parse_bytes(value)?;
        }
        "vm_memory_high_watermark.relative" => {
            let ratio: f64 = value
                .parse()
                .map_err(|_| format!("'{value}' is not a number"))?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("'{value}' is not between 0 and 1"));
            }
            pending.memory_relative = Some((ratio, line));
        }
        "vm_memory_high_watermark.absolute" => {
            pending.memory_absolute = Some((config::parse_bytes(value)?, line));
        }
        "log.file" => {
            config.log_file = match value {
                "false" => None,
                path => Some(PathBuf::from(path)),
            };
        }
        "log.level" => config.log_level = config::parse_log_level(value)?.to_string(),
        "log.console" => config.log_console = Some(parse_bool(value)?),
        "management.tcp.port" => set_http_port(&mut config.management, value)?,
        "management.tcp.ip" => set_http_ip(&mut config.management, value, MANAGEMENT_DEFAULT)?,
        "management.enabled" => {
            set_http_enabled(&mut config.management, value, MANAGEMENT_DEFAULT)?
        }
        "listeners.ssl.default" => config.tls.listen = Some(config::parse_listener(value)?),
        "ssl_options.certfile" => config.tls.certfile = Some(PathBuf::from(value)),
        "ssl_options.keyfile" => config.tls.keyfile = Some(PathBuf::from(value)),
        "ssl_options.cacertfile" => config.tls.cacertfile = Some(PathBuf::from(value)),
        "ssl_options.verify" => {
            config.tls.verify = match value {
                "verify_none" => TlsVerify::None,
                "verify_peer" => TlsVerify::Peer,
                _ => return Err(format!("'{value}' is not verify_none or verify_peer")),
            }
        }
        "ssl_options.fail_if_no_peer_cert" => config.tls.fail_if_no_peer_cert = parse_bool(value)?,
        "ssl_cert_login_from" => {
            config.ssl_cert_login_from = match value {
                "distinguished_name" => CertLoginFrom::DistinguishedName,
                "common_name" => CertLoginFrom::CommonName,
                "subject_alternative_name" => {
                    return Err("subject_alternative_name is not implemented \
                                (distinguished_name or common_name)"
                        .into())
                }
                _ => {
                    return Err(format!(
                        "'{value}' is not distinguished_name or common_name"
                    ))
                }
            }
        }
        "prometheus.tcp.port" => set_http_port(&mut config.prometheus, value)?,
        "prometheus.tcp.ip" => set_http_ip(&mut config.prometheus, value, PROMETHEUS_DEFAULT)?,
        "prometheus.enabled" => {
            set_http_enabled(&mut config.prometheus, value, PROMETHEUS_DEFAULT)?
        }
        _ => {
            if let Some(user) = key
                .strip_prefix("loopback_users.")
                .filter(|u| !u.is_empty())
            {
                pending
                    .loopback
                    .push((user.to_string(), parse_bool(value)?));
            } else if let Some(slot) = key
                .strip_prefix("auth_mechanisms.")
                .filter(|s| !s.is_empty())
            {
                let mechanism = AuthMechanism::from_name(value.as_bytes()).ok_or_else(|| {
                    format!(
                        "'{value}' is not a mechanism coney implements (PLAIN, AMQPLAIN, EXTERNAL)"
                    )
                })?;
                pending.mechanisms.retain(|(s, _)| s != slot);
                pending.mechanisms.push((slot.to_string(), mechanism));
            } else if let Some(tag) = key
                .strip_prefix("default_user_tags.")
                .filter(|t| !t.is_empty())
            {
                pending.tags.push((tag.to_string(), parse_bool(value)?));
            } else if let Some(rest) = key.strip_prefix("shovel.") {
                static_shovel_key(rest, value, line, pending)?;
            } else {
                return Err("unknown key".into());
            }
        }
    }
    Ok(())
}

/// Settles the multi-line settings and returns warnings about the ones without effect.
fn resolve(pending: Pending, config: &mut Config) -> Vec<String> {
    let mut warnings = Vec::new();
    // RabbitMQ: `loopback_users = none` empties the list whatever else is set; otherwise any
    // `loopback_users.NAME` line replaces the default list with the names set to true.
    if pending.loopback_none {
        config.loopback_users.clear();
    } else if !pending.loopback.is_empty() {
        let mut users: Vec<String> = Vec::new();
        for (user, on) in pending.loopback {
            users.retain(|u| *u != user);
            if on {
                users.push(user);
            }
        }
        config.loopback_users = users;
    }
    // RabbitMQ: any `auth_mechanisms.*` line replaces the default list.
    if !pending.mechanisms.is_empty() {
        config.auth_mechanisms = Vec::new();
        for (_, m) in pending.mechanisms {
            if !config.auth_mechanisms.contains(&m) {
                config.auth_mechanisms.push(m);
            }
        }
    }
    // RabbitMQ: the default user's tags are those set to true, if any line sets one.
    if !pending.tags.is_empty() {
        let mut tags: Vec<String> = Vec::new();
        for (tag, on) in pending.tags {
            tags.retain(|t| *t != tag);
            if on {
                tags.push(tag);
            }
        }
        config.default_user_tags = tags;
    }
    // RabbitMQ ignores the absolute watermark when a relative one is set.
    match (pending.memory_relative, pending.memory_absolute) {
        (Some((ratio, _)), absolute) => {
            config.vm_memory_high_watermark = MemoryWatermark::Relative(ratio);
            if let Some((_, line)) = absolute {
                warnings.push(format!(
                    "line {line}: vm_memory_high_watermark.absolute is ignored because \
                     vm_memory_high_watermark.relative is set (as in RabbitMQ)"
                ));
            }
        }
        (None, Some((bytes, _))) => {
            config.vm_memory_high_watermark = MemoryWatermark::Absolute(bytes)
        }
        (None, None) => {}
    }
    if config.tls.listen.is_none() && config.tls.any_option_set() {
        warnings.push(
            "ssl_options.* have no effect without listeners.ssl.default (no TLS listener)".into(),
        );
    }
    warnings
}

/// `shovel.NAME.KEY = VALUE`: KEY is a dynamic shovel's parameter key (RabbitMQ's names);
/// numbers and true/false are taken as JSON numbers and booleans, anything else as a string.
fn static_shovel_key(
    rest: &str,
    value: &str,
    line: usize,
    pending: &mut Pending,
) -> Result<(), String> {
    let Some((name, key)) = rest
        .rsplit_once('.')
        .filter(|(n, k)| !n.is_empty() && !k.is_empty())
    else {
        return Err("unknown key (static shovels are shovel.NAME.KEY)".into());
    };
    let v = match value {
        "true" => serde_json::Value::Bool(true),
        "false" => serde_json::Value::Bool(false),
        _ => match value.parse::<u64>() {
            Ok(n) => n.into(),
            Err(_) => match value.parse::<f64>() {
                Ok(f) if f.is_finite() && key == "reconnect-delay" => f.into(),
                _ => value.into(),
            },
        },
    };
    match pending.shovels.iter_mut().find(|(n, _, _)| n == name) {
        Some((_, map, _)) => {
            map.insert(key.to_owned(), v);
        }
        None => {
            let mut map = serde_json::Map::new();
            map.insert(key.to_owned(), v);
            pending.shovels.push((name.to_owned(), map, line));
        }
    }
    Ok(())
}

/// Checks each static shovel as a dynamic one's definition is checked.
fn resolve_shovels(pending: &mut Pending, config: &mut Config) -> Result<(), (usize, String)> {
    for (name, map, line) in std::mem::take(&mut pending.shovels) {
        let value = serde_json::Value::Object(map);
        let spec = crate::definitions::shovel::parse_shovel(&name, &value).map_err(|e| {
            (
                line,
                format!("shovel '{name}': {}", e.trim_end().replace('\n', "; ")),
            )
        })?;
        config.shovels.push((name, spec));
    }
    Ok(())
}

/// A permission pattern, refused here (with the line) if the broker could not compile it.
fn pattern(value: &str) -> Result<String, String> {
    crate::auth::PermissionPattern::new(value).map_err(|e| e.to_string())?;
    Ok(value.to_string())
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("'{value}' is not true or false")),
    }
}

/// A decimal integer within `min..=max`.
fn parse_number<T>(value: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match value.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "'{value}' is not a whole number from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Config {
        let mut c = Config::default();
        parse("test.conf", text, &mut c).unwrap();
        c
    }

    fn error(text: &str) -> String {
        let mut c = Config::default();
        parse("test.conf", text, &mut c).unwrap_err().to_string()
    }

    /// auth_mechanisms.* replaces the default set (the last line for a slot wins);
    /// ssl_cert_login_from picks the certificate field; unknown values are refused.
    #[test]
    fn auth_mechanism_keys() {
        let d = parsed("");
        assert_eq!(
            d.auth_mechanisms,
            [AuthMechanism::Plain, AuthMechanism::Amqplain]
        );
        assert_eq!(d.ssl_cert_login_from, CertLoginFrom::DistinguishedName);
        let c = parsed(
            "auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = AMQPLAIN\nauth_mechanisms.2 = EXTERNAL\n\
             ssl_cert_login_from = common_name\n",
        );
        assert_eq!(
            c.auth_mechanisms,
            [AuthMechanism::Plain, AuthMechanism::External]
        );
        assert_eq!(c.ssl_cert_login_from, CertLoginFrom::CommonName);
        assert!(error("auth_mechanisms.1 = RABBIT-CR-DEMO").contains("not a mechanism"));
        assert!(error("ssl_cert_login_from = subject_alternative_name").contains("not implemented"));
        assert!(error("ssl_cert_login_from = cn").contains("'cn'"));
    }

    /// RabbitMQ's amqps keys: listeners.ssl.default (a bare port listens everywhere) and
    /// ssl_options.*; TLS is off without the listener key, and options alone only warn.
    #[test]
    fn config_file_tls_keys() {
        assert_eq!(Config::default().tls.listen, None);
        let c = parsed(
            "listeners.ssl.default = 127.0.0.1:5671\n\
             ssl_options.certfile = /etc/coney/server.pem\n\
             ssl_options.keyfile = /etc/coney/server.key\n\
             ssl_options.cacertfile = /etc/coney/ca.pem\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\n",
        );
        assert_eq!(c.tls.listen, Some("127.0.0.1:5671".parse().unwrap()));
        assert_eq!(c.tls.certfile, Some(PathBuf::from("/etc/coney/server.pem")));
        assert_eq!(c.tls.keyfile, Some(PathBuf::from("/etc/coney/server.key")));
        assert_eq!(c.tls.cacertfile, Some(PathBuf::from("/etc/coney/ca.pem")));
        assert_eq!(c.tls.verify, TlsVerify::Peer);
        assert!(c.tls.fail_if_no_peer_cert);
        assert_eq!(
            parsed("listeners.ssl.default = 5671").tls.listen,
            Some("0.0.0.0:5671".parse().unwrap())
        );
        assert!(error("ssl_options.verify = verify_maybe")
            .contains("ssl_options.verify: 'verify_maybe' is not verify_none or verify_peer"));
        assert!(error("ssl_options.fail_if_no_peer_cert = yes").contains("not true or false"));
        let mut c = Config::default();
        let warnings = parse("t", "ssl_options.verify = verify_peer\n", &mut c).unwrap();
        assert!(warnings[0].contains("no effect without listeners.ssl.default"));
        let mut c = Config::default();
        assert!(parse("t", "listeners.ssl.default = 5671\n", &mut c)
            .unwrap()
            .is_empty());
    }

    /// An empty or comment-only file leaves every default in place.
    #[test]
    fn config_file_empty_keeps_defaults() {
        let c = parsed("# nothing here\n\n   \n  # indented comment\n");
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    /// RabbitMQ's management.tcp.* and prometheus.tcp.* keys move the HTTP listeners and
    /// make them explicit (a bind failure then stops the start); the enabled keys turn one off.
    #[test]
    fn config_file_http_listener_keys() {
        let c = parsed("management.tcp.port = 15999\nmanagement.tcp.ip = 0.0.0.0\nprometheus.enabled = false\n");
        assert_eq!(c.management.addr, Some("0.0.0.0:15999".parse().unwrap()));
        assert!(c.management.explicit);
        assert_eq!(c.prometheus.addr, None);
        let d = Config::default();
        assert_eq!(d.management.addr, Some("127.0.0.1:15672".parse().unwrap()));
        assert_eq!(d.prometheus.addr, Some("127.0.0.1:15692".parse().unwrap()));
        assert!(!d.management.explicit && !d.prometheus.explicit);
        assert!(error("management.tcp.port = 0\n").contains("management.tcp.port"));
    }

    /// Each key, with RabbitMQ's syntax, lands in its Config field.
    #[test]
    fn config_file_every_key() {
        let c = parsed(
            "listeners.tcp.default = 127.0.0.2:5673\n\
             data_dir = /var/lib/coney\n\
             default_user = admin\n\
             default_pass = s3cret\n\
             loopback_users.admin = true\n\
             heartbeat = 30\n\
             frame_max = 65536\n\
             channel_max = 100\n\
             disk_free_limit.absolute = 1GB\n\
             vm_memory_high_watermark.relative = 0.6\n\
             max_message_size = 1048576\n\
             log.file = /var/log/coney/coney.log\n\
             log.level = debug\n\
             log.console = true\n\
             handshake_timeout = 15000\n\
             connection_max = 1000\n",
        );
        assert_eq!(c.listen, "127.0.0.2:5673".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/coney"));
        assert_eq!(c.default_user, "admin");
        assert_eq!(c.default_pass, "s3cret");
        assert_eq!(c.loopback_users, vec!["admin".to_string()]);
        assert_eq!(c.heartbeat_secs, 30);
        assert_eq!(c.frame_max, 65536);
        assert_eq!(c.channel_max, 100);
        assert_eq!(c.disk_free_limit_bytes, 1_000_000_000);
        assert_eq!(c.vm_memory_high_watermark, MemoryWatermark::Relative(0.6));
        assert_eq!(c.max_message_size, 1_048_576);
        assert_eq!(c.log_file, Some(PathBuf::from("/var/log/coney/coney.log")));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.log_console, Some(true));
        assert!(c.log_to_console());
        assert_eq!(c.handshake_timeout_secs, 15);
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.validate(), Ok(()));
    }

    /// A bare port listens on every interface, as RabbitMQ does.
    #[test]
    fn config_file_listener_bare_port() {
        assert_eq!(
            parsed("listeners.tcp.default = 5673").listen,
            "0.0.0.0:5673".parse().unwrap()
        );
        assert_eq!(
            parsed("listeners.tcp.default = ::1:5673").listen,
            "[::1]:5673".parse().unwrap()
        );
    }

    /// loopback_users follows RabbitMQ: none clears, NAME = true/false builds the list.
    #[test]
    fn config_file_loopback_users() {
        assert!(parsed("loopback_users = none").loopback_users.is_empty());
        assert!(parsed("loopback_users.guest = false")
            .loopback_users
            .is_empty());
        assert_eq!(
            parsed("loopback_users.a = true\nloopback_users.b = true\nloopback_users.a = false")
                .loopback_users,
            vec!["b".to_string()]
        );
        assert!(parsed("loopback_users.x = true\nloopback_users = none")
            .loopback_users
            .is_empty());
        assert_eq!(
            parsed("heartbeat = 5").loopback_users,
            vec!["guest".to_string()]
        );
    }

    /// Absolute watermark alone is used; with a relative one it is ignored with a warning.
    #[test]
    fn config_file_memory_watermark() {
        let c = parsed("vm_memory_high_watermark.absolute = 2GiB");
        assert_eq!(
            c.vm_memory_high_watermark,
            MemoryWatermark::Absolute(2 << 30)
        );
        let mut c = Config::default();
        let warnings = parse(
            "t",
            "vm_memory_high_watermark.absolute = 2GB\nvm_memory_high_watermark.relative = 0.5",
            &mut c,
        )
        .unwrap();
        assert_eq!(c.vm_memory_high_watermark, MemoryWatermark::Relative(0.5));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("line 1:"), "{warnings:?}");
    }

    /// Units, `false` and the special zeros.
    #[test]
    fn config_file_value_forms() {
        assert_eq!(
            parsed("disk_free_limit.absolute = 50000").disk_free_limit_bytes,
            50_000
        );
        assert_eq!(
            parsed("disk_free_limit.absolute = 2Gi").disk_free_limit_bytes,
            2 << 30
        );
        assert_eq!(parsed("log.file = false").log_file, None);
        assert_eq!(parsed("log.file = /x.log\nlog.file = false").log_file, None);
        assert!(!parsed("log.file = /x.log").log_to_console());
        assert_eq!(parsed("log.level = warning").log_level, "warn");
        assert_eq!(parsed("log.level = none").log_level, "off");
        assert_eq!(parsed("channel_max = 0").channel_max, u16::MAX);
        assert_eq!(parsed("heartbeat = 0").heartbeat_secs, 0);
        assert_eq!(parsed("handshake_timeout = 1").handshake_timeout_secs, 1);
        assert_eq!(
            parsed("handshake_timeout = 10001").handshake_timeout_secs,
            11
        );
        assert_eq!(parsed("heartbeat = 5\nheartbeat = 7").heartbeat_secs, 7);
        let infinity = parsed("connection_max = infinity").max_connections;
        assert_eq!(infinity, limits::CONNECTIONS_MAX);
    }

    /// Whitespace around '=' and trailing comments are allowed, as in rabbitmq.conf.
    #[test]
    fn config_file_syntax_tolerance() {
        let c = parsed("  heartbeat=15   # seconds\n\tdefault_user =  bob\r\n");
        assert_eq!(c.heartbeat_secs, 15);
        assert_eq!(c.default_user, "bob");
    }

    /// Every error names the file, the line and (when there is one) the key.
    #[test]
    fn config_file_errors_name_file_line_key() {
        let cases = [
            ("\n\nhearbeat = 10", "test.conf:3: hearbeat: unknown key"),
            (
                "heartbeat = ten",
                "test.conf:1: heartbeat: 'ten' is not a whole number from 0 to 65535",
            ),
            ("heartbeat = 70000", "test.conf:1: heartbeat: "),
            (
                "# c\nframe_max = 0",
                "test.conf:2: frame_max: '0' is not a whole number from 4096 to 131072",
            ),
            ("frame_max = 1000000", "test.conf:1: frame_max: "),
            ("channel_max = -1", "test.conf:1: channel_max: "),
            ("max_message_size = 0", "test.conf:1: max_message_size: "),
            ("max_message_size = 1GB", "test.conf:1: max_message_size: "),
            ("handshake_timeout = 0", "test.conf:1: handshake_timeout: "),
            ("connection_max = 70000", "test.conf:1: connection_max: "),
            (
                "connection_max = unlimited",
                "test.conf:1: connection_max: ",
            ),
            (
                "disk_free_limit.absolute = lots",
                "test.conf:1: disk_free_limit.absolute: 'lots' is not",
            ),
            (
                "vm_memory_high_watermark.relative = 1.5",
                "test.conf:1: vm_memory_high_watermark.relative: ",
            ),
            (
                "vm_memory_high_watermark.relative = x",
                "test.conf:1: vm_memory_high_watermark.relative: ",
            ),
            (
                "vm_memory_high_watermark.absolute = 1.5GB",
                "test.conf:1: vm_memory_high_watermark.absolute: ",
            ),
            (
                "listeners.tcp.default = localhost:5672",
                "test.conf:1: listeners.tcp.default: ",
            ),
            ("loopback_users = guest", "test.conf:1: loopback_users: "),
            (
                "loopback_users.guest = yes",
                "test.conf:1: loopback_users.guest: 'yes' is not true or false",
            ),
            (
                "loopback_users. = true",
                "test.conf:1: loopback_users.: unknown key",
            ),
            ("log.level = verbose", "test.conf:1: log.level: "),
            ("log.console = 1", "test.conf:1: log.console: "),
            ("heartbeat =", "test.conf:1: heartbeat: has no value"),
            ("heartbeat 10", "test.conf:1: expected 'key = value'"),
            (
                "default_pass hunter2",
                "test.conf:1: expected 'key = value', found 'default_pass …'",
            ),
            ("= 10", "test.conf:1: '' is not a key"),
            ("heart beat = 10", "test.conf:1: 'heart beat' is not a key"),
            (
                "listeners.tcp.other = 5672",
                "test.conf:1: listeners.tcp.other: unknown key",
            ),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }

    /// Files that cannot be used at all are named without a line.
    #[test]
    fn config_file_load_errors() {
        let dir = std::env::temp_dir().join(format!("coney-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.conf");
        let mut c = Config::default();
        let e = load(&missing, &mut c).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot open", missing.display())));
        let binary = dir.join("binary.conf");
        std::fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
        assert!(load(&binary, &mut c)
            .unwrap_err()
            .to_string()
            .ends_with("is not UTF-8 text"));
        let good = dir.join("good.conf");
        std::fs::write(&good, "heartbeat = 9\n").unwrap();
        load(&good, &mut c).unwrap();
        assert_eq!(c.heartbeat_secs, 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const PACKAGED_CONF: &str = include_str!("../packaging/coney.conf");
    const MAN_PAGE: &str = include_str!("../packaging/coney.8");

    /// KEYS is the list `apply` knows: none of them is an unknown key.
    #[test]
    fn config_keys_are_known() {
        for key in KEYS {
            let key = key.replace("NAME", "guest");
            let mut c = Config::default();
            let outcome = apply(&key, "?", 1, &mut c, &mut Pending::default());
            assert_ne!(outcome, Err("unknown key".to_string()), "{key}");
        }
    }

    /// The packaged config file and the man page document every key.
    #[test]
    fn config_keys_are_documented() {
        for key in KEYS {
            let key = key.trim_end_matches("NAME");
            assert!(
                PACKAGED_CONF.contains(key),
                "coney.conf does not mention {key}"
            );
            assert!(MAN_PAGE.contains(key), "coney.8 does not mention {key}");
        }
    }

    /// Uncommenting every "# key = value" line of the packaged file changes nothing but
    /// data_dir (which the package sets): the values shown are the defaults, and each parses.
    #[test]
    fn config_packaged_file_shows_defaults() {
        let mut uncommented = String::new();
        let mut shown = Vec::new();
        for line in PACKAGED_CONF.lines() {
            let setting = line.strip_prefix("# ").filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' '))
            });
            if let Some(setting) = setting {
                shown.push(setting.split(" = ").next().unwrap_or("").to_string());
                uncommented.push_str(setting);
            } else {
                uncommented.push_str(line);
            }
            uncommented.push('\n');
        }
        let mut c = Config::default();
        let warnings = parse("coney.conf", &uncommented, &mut c).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let d = Config::default();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/coney"));
        c.data_dir = d.data_dir.clone();
        assert_eq!(c.log_to_console(), d.log_to_console());
        c.log_console = d.log_console;
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
        // Shown commented out: all but the ones whose "default" is a different form.
        for key in KEYS {
            let skip = [
                "data_dir",
                "loopback_users",
                "loopback_users.NAME",
                "default_user_tags.NAME",
                "load_definitions",
                "vm_memory_high_watermark.absolute",
            ];
            if !skip.contains(&key) {
                assert!(
                    shown.iter().any(|s| s == key),
                    "{key} is not shown at its default"
                );
            }
        }
    }
}

/// `management.tcp.port` / `prometheus.tcp.port`: the port, keeping the address.
fn set_http_port(l: &mut HttpListener, value: &str) -> Result<(), String> {
    let port: u16 = parse_number(value, 1, u16::MAX)?;
    let ip = l
        .addr
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |a| a.ip());
    *l = HttpListener {
        addr: Some(std::net::SocketAddr::new(ip, port)),
        explicit: true,
    };
    Ok(())
}

/// `management.tcp.ip` / `prometheus.tcp.ip`: the address, keeping the port.
fn set_http_ip(
    l: &mut HttpListener,
    value: &str,
    default: std::net::SocketAddr,
) -> Result<(), String> {
    let ip: std::net::IpAddr = value
        .parse()
        .map_err(|_| format!("'{value}' is not an IP address"))?;
    let port = l.addr.map_or(default.port(), |a| a.port());
    *l = HttpListener {
        addr: Some(std::net::SocketAddr::new(ip, port)),
        explicit: true,
    };
    Ok(())
}

/// `management.enabled` / `prometheus.enabled` (coney's keys; RabbitMQ turns a plugin off
/// instead): false switches the listener off, true keeps or restores it.
fn set_http_enabled(
    l: &mut HttpListener,
    value: &str,
    default: std::net::SocketAddr,
) -> Result<(), String> {
    let on = parse_bool(value)?;
    *l = HttpListener {
        addr: if on {
            Some(l.addr.unwrap_or(default))
        } else {
            None
        },
        explicit: true,
    };
    Ok(())
}
