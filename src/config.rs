//! Runtime configuration with RabbitMQ's defaults, and the value syntaxes shared by the config
//! file and the command line. Validated against `limits` at startup; nothing else in the
//! broker reads the environment, the command line or the config file (see `config_file`).

pub use crate::auth::cert_subject::CertLoginFrom;
use crate::limits;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// RabbitMQ's default free-disk limit (`disk_free_limit.absolute`, 50 MB in decimal units).
pub(crate) const DISK_FREE_LIMIT_DEFAULT_BYTES: u64 = 50_000_000;
/// RabbitMQ's default memory high watermark, a fraction of the machine's RAM.
pub(crate) const MEMORY_HIGH_WATERMARK_DEFAULT_RATIO: f64 = 0.4;
/// The default listener: loopback only, so a fresh install is not reachable from the network.
pub(crate) const LISTEN_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5672);
/// RabbitMQ's management port, on loopback only until configured otherwise.
pub(crate) const MANAGEMENT_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15672);
/// rabbitmq_prometheus's port, on loopback only until configured otherwise.
pub(crate) const PROMETHEUS_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15692);

/// An HTTP listener (management API, Prometheus): where, and whether that was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListener {
    /// None: off.
    pub addr: Option<SocketAddr>,
    /// Set by the config file or a flag. An explicit listener that cannot bind stops the
    /// start (exit 69, as the AMQP one); the default one logs why and the broker runs on
    /// without it, so several brokers on one host (tests, a second instance) still start.
    pub explicit: bool,
}

impl HttpListener {
    const fn default_at(addr: SocketAddr) -> Self {
        HttpListener {
            addr: Some(addr),
            explicit: false,
        }
    }

    /// `ADDR:PORT`, `PORT`, or `off`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let addr = match value {
            "off" | "false" => None,
            v => Some(parse_listener(v)?),
        };
        Ok(HttpListener {
            addr,
            explicit: true,
        })
    }
}

/// The amqps listener (RabbitMQ `listeners.ssl.default` and `ssl_options.*`). Off unless
/// `listen` is set; the files are read when the broker starts (`net::tls::server_config`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    pub listen: Option<SocketAddr>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cacertfile: Option<PathBuf>,
    pub verify: TlsVerify,
    /// With verify_peer: refuse clients that send no certificate (RabbitMQ default false).
    pub fail_if_no_peer_cert: bool,
}

/// `ssl_options.verify`: whether client certificates are asked for and checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVerify {
    /// No client certificate is requested (Erlang's default for servers).
    #[default]
    None,
    /// A client certificate is requested and, when sent, must chain to `cacertfile`.
    Peer,
}

impl TlsOptions {
    /// Whether any `ssl_options.*` key was set.
    pub fn any_option_set(&self) -> bool {
        let defaults = TlsOptions {
            listen: self.listen,
            ..TlsOptions::default()
        };
        *self != defaults
    }
}

/// Above this much heap publishers are blocked (RabbitMQ `vm_memory_high_watermark.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryWatermark {
    /// Fraction of the machine's (or cgroup's) memory, 0.0 to 1.0 (`.relative`).
    Relative(f64),
    /// Bytes (`.absolute`).
    Absolute(u64),
}

impl std::str::FromStr for MemoryWatermark {
    type Err = String;
    /// The command line's one value for both forms: "0.4" is relative; "512MB", "1GB",
    /// "200000000" are absolute (RabbitMQ's units, see `parse_bytes`).
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

/// A password from the configuration: never shown by `Debug`, so a dump of the config cannot
/// put it into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

impl PartialEq<&str> for Secret {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// An env_logger filter such as `info` or `coney::session=debug`.
    pub log_level: String,
    /// Append log lines to this file; reopened on SIGHUP. None: no log file.
    pub log_file: Option<PathBuf>,
    /// Log to stderr. None: only when there is no log file (RabbitMQ's `log.console` is off
    /// whenever a file is configured); see `log_to_console`.
    pub log_console: Option<bool>,
    /// The user, password, vhost, tags and permissions a fresh data dir is seeded with
    /// (RabbitMQ's `default_*` keys); used once, when there are no users or vhosts yet.
    pub default_user: String,
    pub default_pass: Secret,
    pub default_vhost: String,
    pub default_user_tags: Vec<String>,
    /// configure, write, read.
    pub default_permissions: [String; 3],
    /// Users that may log in only from a loopback address (RabbitMQ: loopback_users).
    pub loopback_users: Vec<String>,
    /// A definitions file imported at every start (RabbitMQ: load_definitions); when set, a
    /// fresh data dir is not seeded with the defaults.
    pub load_definitions: Option<PathBuf>,
    pub heartbeat_secs: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub max_message_size: u64,
    /// Whole seconds: deadlines are checked once a second, so the file's milliseconds
    /// (RabbitMQ's `handshake_timeout`) are rounded up.
    pub handshake_timeout_secs: u64,
    /// Publishers are blocked while the data dir's filesystem has less free space than this.
    pub disk_free_limit_bytes: u64,
    /// Publishers are blocked above this much heap (RabbitMQ default: 0.4 of memory).
    pub vm_memory_high_watermark: MemoryWatermark,
    /// Connections past this are accepted and closed at once (RabbitMQ: connection_max).
    pub max_connections: usize,
    /// The management HTTP API and web page (RabbitMQ `management.tcp.*`).
    pub management: HttpListener,
    /// Prometheus metrics (RabbitMQ `prometheus.tcp.*`).
    pub prometheus: HttpListener,
    /// The amqps listener; off by default, as in RabbitMQ.
    pub tls: TlsOptions,
    /// The SASL mechanisms that may be offered, in the order connection.start lists them
    /// (RabbitMQ `auth_mechanisms.*`, in file order); default PLAIN and AMQPLAIN, as RabbitMQ.
    pub auth_mechanisms: Vec<AuthMechanism>,
    /// Where SASL EXTERNAL takes the user name from (RabbitMQ `ssl_cert_login_from`).
    pub ssl_cert_login_from: CertLoginFrom,
    /// Static shovels (`shovel.NAME.KEY = VALUE`), checked, in file order.
    pub shovels: Vec<(String, crate::definitions::shovel::ShovelSpec)>,
}

/// A SASL mechanism coney implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Amqplain,
    /// The verified client certificate names the user (rabbitmq_auth_mechanism_ssl).
    External,
}

impl AuthMechanism {
    pub const ALL: [AuthMechanism; 3] = [
        AuthMechanism::Plain,
        AuthMechanism::Amqplain,
        AuthMechanism::External,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Amqplain => "AMQPLAIN",
            AuthMechanism::External => "EXTERNAL",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name().as_bytes() == name)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: LISTEN_DEFAULT,
            data_dir: PathBuf::from("data"),
            log_level: "info".into(),
            log_file: None,
            log_console: None,
            default_user: "guest".into(),
            default_pass: Secret("guest".into()),
            default_vhost: "/".into(),
            default_user_tags: vec!["administrator".into()],
            default_permissions: [".*".into(), ".*".into(), ".*".into()],
            loopback_users: vec!["guest".into()],
            load_definitions: None,
            heartbeat_secs: limits::HEARTBEAT_SECS,
            frame_max: limits::FRAME_MAX_BYTES,
            channel_max: limits::CHANNEL_MAX,
            max_message_size: limits::MESSAGE_SIZE_MAX_BYTES,
            handshake_timeout_secs: limits::HANDSHAKE_TIMEOUT_SECS,
            disk_free_limit_bytes: DISK_FREE_LIMIT_DEFAULT_BYTES,
            vm_memory_high_watermark: MemoryWatermark::Relative(
                MEMORY_HIGH_WATERMARK_DEFAULT_RATIO,
            ),
            max_connections: limits::CONNECTIONS_MAX,
            management: HttpListener::default_at(MANAGEMENT_DEFAULT),
            prometheus: HttpListener::default_at(PROMETHEUS_DEFAULT),
            tls: TlsOptions::default(),
            auth_mechanisms: vec![AuthMechanism::Plain, AuthMechanism::Amqplain],
            ssl_cert_login_from: CertLoginFrom::default(),
            shovels: Vec::new(),
        }
    }
}

impl Config {
    /// What a fresh data dir is seeded with, or None when definitions are loaded at boot
    /// instead (RabbitMQ then seeds nothing).
    pub fn default_data(&self) -> Option<crate::broker::DefaultData> {
        if self.load_definitions.is_some() {
            return None;
        }
        Some(crate::broker::DefaultData {
            user: self.default_user.clone(),
            pass: self.default_pass.0.clone(),
            vhost: self.default_vhost.clone(),
            tags: self.default_user_tags.clone(),
            permissions: self.default_permissions.clone(),
        })
    }

    /// Whether log lines go to stderr (the journal, under systemd).
    pub fn log_to_console(&self) -> bool {
        self.log_console.unwrap_or(self.log_file.is_none())
    }

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
        if self.max_connections > limits::CONNECTIONS_MAX {
            return Err(format!(
                "connection_max must be at most {}",
                limits::CONNECTIONS_MAX
            ));
        }
        if self.handshake_timeout_secs == 0 {
            return Err("handshake_timeout must be positive".into());
        }
        if self.default_user.is_empty() {
            return Err("default_user must not be empty".into());
        }
        if self.default_vhost.is_empty() {
            return Err("default_vhost must not be empty".into());
        }
        if let MemoryWatermark::Relative(r) = self.vm_memory_high_watermark {
            if !(0.0..=1.0).contains(&r) {
                return Err("vm_memory_high_watermark.relative must be between 0 and 1".into());
            }
        }
        Ok(())
    }
}

/// Settings given on the command line. Applied after the config file, so they win.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    pub vm_memory_high_watermark: Option<String>,
    pub disk_free_limit: Option<String>,
    pub management_listen: Option<String>,
    pub prometheus_listen: Option<String>,
}

impl Overrides {
    /// Applies the flags that were given; the message names the flag that is wrong.
    pub fn apply(&self, config: &mut Config) -> Result<(), String> {
        if let Some(l) = &self.listen {
            config.listen = parse_listener(l).map_err(|e| format!("--listen: {e}"))?;
        }
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(l) = &self.log_level {
            // A RabbitMQ level name, or any env_logger filter such as `coney::session=debug`.
            config.log_level = parse_log_level(l).map_or_else(|_| l.clone(), str::to_string);
        }
        if let Some(f) = &self.log_file {
            config.log_file = Some(f.clone());
        }
        if let Some(w) = &self.vm_memory_high_watermark {
            config.vm_memory_high_watermark = w
                .parse()
                .map_err(|e| format!("--vm-memory-high-watermark: {e}"))?;
        }
        if let Some(d) = &self.disk_free_limit {
            config.disk_free_limit_bytes =
                parse_bytes(d).map_err(|e| format!("--disk-free-limit: {e}"))?;
        }
        if let Some(l) = &self.management_listen {
            config.management =
                HttpListener::parse(l).map_err(|e| format!("--management-listen: {e}"))?;
        }
        if let Some(l) = &self.prometheus_listen {
            config.prometheus =
                HttpListener::parse(l).map_err(|e| format!("--prometheus-listen: {e}"))?;
        }
        Ok(())
    }
}

/// Parses a listener as RabbitMQ's `listeners.tcp.*` does: `PORT`, `IPv4:PORT`, `[IPv6]:PORT`
/// or `IPv6:PORT`. A bare port means every IPv4 interface (0.0.0.0), as in RabbitMQ, so a
/// rabbitmq.conf line means the same here; coney's own default stays loopback-only. Port 0
/// asks the kernel for a free port (tests).
pub(crate) fn parse_listener(value: &str) -> Result<SocketAddr, String> {
    let bad = || format!("'{value}' is not a PORT or ADDR:PORT");
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port(value)?,
        ));
    }
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok(a);
    }
    // RabbitMQ writes IPv6 listeners without brackets (`::1:5672`): the port is after the
    // last colon.
    let (host, p) = value.rsplit_once(':').ok_or_else(bad)?;
    let ip: IpAddr = host.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port(p)?))
}

/// Parses an amount of bytes as RabbitMQ does (`rabbit_resource_monitor_misc`, 3.13+): a
/// number with an optional unit; k/M/G/T/P and kB/MB/GB/TB/PB are powers of 1000,
/// Ki/Mi/Gi/Ti/Pi and KiB/MiB/GiB/TiB/PiB powers of 1024. Units are case-insensitive.
pub(crate) fn parse_bytes(value: &str) -> Result<u64, String> {
    let bad = || format!("'{value}' is not a number of bytes with an optional unit (50MB, 1GiB)");
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (number, unit) = value.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u64.pow(2),
        "g" | "gb" => 1000_u64.pow(3),
        "t" | "tb" => 1000_u64.pow(4),
        "p" | "pb" => 1000_u64.pow(5),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        _ => return Err(bad()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{value}' is too large"))
}

/// Maps a RabbitMQ log level to an env_logger filter. RabbitMQ's `warning`, `critical` and
/// `none` become `warn`, `error` and `off`; `trace` is coney's own, below `debug`.
pub(crate) fn parse_log_level(value: &str) -> Result<&'static str, String> {
    match value {
        "trace" => Ok("trace"),
        "debug" => Ok("debug"),
        "info" => Ok("info"),
        "warning" | "warn" => Ok("warn"),
        "error" | "critical" => Ok("error"),
        "none" => Ok("off"),
        _ => Err(format!(
            "'{value}' is not one of debug, info, warning, error, critical, none"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are RabbitMQ's, except the loopback-only listener.
    #[test]
    fn config_defaults() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:5672".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_file, None);
        assert!(c.log_to_console());
        assert_eq!(c.default_user, "guest");
        assert_eq!(c.default_pass, "guest");
        assert!(format!("{c:?}").contains("default_pass: <hidden>"));
        assert_eq!(c.loopback_users, vec!["guest".to_string()]);
        assert_eq!(c.default_vhost, "/");
        assert_eq!(c.default_user_tags, vec!["administrator".to_string()]);
        assert_eq!(c.default_permissions, [".*", ".*", ".*"]);
        assert_eq!(c.load_definitions, None);
        assert!(c.default_data().is_some());
        assert_eq!(c.heartbeat_secs, 60);
        assert_eq!(c.frame_max, 131_072);
        assert_eq!(c.channel_max, 2047);
        assert_eq!(c.max_message_size, 128 * 1024 * 1024);
        assert_eq!(c.handshake_timeout_secs, 10);
        assert_eq!(c.disk_free_limit_bytes, 50_000_000);
        assert_eq!(c.max_connections, limits::CONNECTIONS_MAX);
        assert_eq!(c.vm_memory_high_watermark, MemoryWatermark::Relative(0.4));
        assert_eq!(c.validate(), Ok(()));
    }

    /// A configured log file turns the console off unless log.console says otherwise.
    #[test]
    fn config_console_follows_log_file() {
        let mut c = Config {
            log_file: Some("/tmp/x.log".into()),
            ..Config::default()
        };
        assert!(!c.log_to_console());
        c.log_console = Some(true);
        assert!(c.log_to_console());
    }

    /// Listener syntaxes RabbitMQ accepts, and the bare-port-means-all-interfaces rule.
    #[test]
    fn config_listener_forms() {
        let p = |s| parse_listener(s);
        assert_eq!(p("5673"), Ok("0.0.0.0:5673".parse().unwrap()));
        assert_eq!(p("127.0.0.1:5673"), Ok("127.0.0.1:5673".parse().unwrap()));
        assert_eq!(p("[::1]:5673"), Ok("[::1]:5673".parse().unwrap()));
        assert_eq!(p("::1:5673"), Ok("[::1]:5673".parse().unwrap()));
        assert_eq!(p("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
        for bad in ["", "65536", "x:1", "127.0.0.1", "host:5672", ":5672", "::1"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    /// Information units as RabbitMQ 3.13+ reads them.
    #[test]
    fn config_information_units() {
        let p = |s| parse_bytes(s);
        assert_eq!(p("123"), Ok(123));
        assert_eq!(p("50MB"), Ok(50_000_000));
        assert_eq!(p("1GB"), Ok(1_000_000_000));
        assert_eq!(p("2gb"), Ok(2_000_000_000));
        assert_eq!(p("1G"), Ok(1_000_000_000));
        assert_eq!(p("10k"), Ok(10_000));
        assert_eq!(p("1KiB"), Ok(1024));
        assert_eq!(p("1Mi"), Ok(1 << 20));
        assert_eq!(p("3GiB"), Ok(3 << 30));
        assert_eq!(p("1TB"), Ok(1_000_000_000_000));
        for bad in [
            "",
            "MB",
            "1.5GB",
            "-1",
            "1 GB",
            "1XB",
            "99999999999999999999",
            "9999999PB",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    /// The command line's single watermark value picks the form by its syntax.
    #[test]
    fn config_watermark_flag_forms() {
        assert_eq!("0.4".parse(), Ok(MemoryWatermark::Relative(0.4)));
        assert_eq!("200MB".parse(), Ok(MemoryWatermark::Absolute(200_000_000)));
        assert_eq!("1GiB".parse(), Ok(MemoryWatermark::Absolute(1 << 30)));
        assert!("1.5".parse::<MemoryWatermark>().is_err());
        assert!("lots".parse::<MemoryWatermark>().is_err());
    }

    /// RabbitMQ level names map to env_logger filters.
    #[test]
    fn config_log_levels() {
        assert_eq!(parse_log_level("warning"), Ok("warn"));
        assert_eq!(parse_log_level("critical"), Ok("error"));
        assert_eq!(parse_log_level("none"), Ok("off"));
        assert_eq!(parse_log_level("debug"), Ok("debug"));
        assert!(parse_log_level("verbose").is_err());
    }

    /// validate() names the setting that is out of bounds.
    #[test]
    fn config_validate_errors() {
        let bad = |c: Config| c.validate().unwrap_err();
        assert!(bad(Config {
            frame_max: 100,
            ..Config::default()
        })
        .contains("frame_max"));
        assert!(bad(Config {
            channel_max: 0,
            ..Config::default()
        })
        .contains("channel_max"));
        assert!(bad(Config {
            max_message_size: 0,
            ..Config::default()
        })
        .contains("max_message_size"));
        assert!(bad(Config {
            handshake_timeout_secs: 0,
            ..Config::default()
        })
        .contains("handshake"));
        assert!(bad(Config {
            default_user: String::new(),
            ..Config::default()
        })
        .contains("default_user"));
        let mem = MemoryWatermark::Relative(1.5);
        assert!(bad(Config {
            vm_memory_high_watermark: mem,
            ..Config::default()
        })
        .contains("relative"));
    }

    /// Command-line flags replace what the file set and leave the rest alone.
    #[test]
    fn config_overrides_win_over_file() {
        let mut c = Config::default();
        crate::config_file::parse(
            "t",
            "listeners.tcp.default = 5680\ndata_dir = /srv/a\nlog.level = error\nheartbeat = 9",
            &mut c,
        )
        .unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:5690".into()),
            data_dir: Some("/srv/b".into()),
            log_level: Some("warning".into()),
            log_file: Some("/srv/b/coney.log".into()),
            vm_memory_high_watermark: Some("512MB".into()),
            disk_free_limit: Some("1GiB".into()),
            management_listen: Some("off".into()),
            prometheus_listen: Some("127.0.0.1:9419".into()),
        };
        o.apply(&mut c).unwrap();
        assert_eq!(c.management.addr, None);
        assert_eq!(c.prometheus.addr, Some("127.0.0.1:9419".parse().unwrap()));
        assert!(c.prometheus.explicit);
        assert_eq!(c.listen, "127.0.0.1:5690".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.log_file, Some(PathBuf::from("/srv/b/coney.log")));
        assert_eq!(c.heartbeat_secs, 9);
        assert_eq!(
            c.vm_memory_high_watermark,
            MemoryWatermark::Absolute(512_000_000)
        );
        assert_eq!(c.disk_free_limit_bytes, 1 << 30);
        let raw = Overrides {
            log_level: Some("coney=debug".into()),
            ..Overrides::default()
        };
        raw.apply(&mut c).unwrap();
        assert_eq!(c.log_level, "coney=debug");
        let bad = Overrides {
            listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        assert!(bad.apply(&mut c).unwrap_err().starts_with("--listen: "));
        let bad = Overrides {
            disk_free_limit: Some("lots".into()),
            ..Overrides::default()
        };
        assert!(bad
            .apply(&mut c)
            .unwrap_err()
            .starts_with("--disk-free-limit: "));
        Overrides::default().apply(&mut c).unwrap();
        assert_eq!(c.listen, "127.0.0.1:5690".parse().unwrap());
    }
}
