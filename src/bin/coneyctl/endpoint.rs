//! Finding the management API and the credentials for it. Each of host, port, user and
//! password comes from the first of: the command line (rabbitmqadmin's --host, --port,
//! --username, --password), `CONEYCTL_URL` (`http://user:pass@host:port/prefix`), the broker's
//! config file (`/etc/coney/coney.conf` or --config: `management.tcp.ip`,
//! `management.tcp.port`, `default_user`, `default_pass`), and the defaults
//! 127.0.0.1:15672 guest/guest.
//!
//! The config file is read with the broker's own parser (`coney::config_file::load`), so its
//! keys mean what they mean to the broker: the management listener's address (with
//! `management.enabled = false` noted, since nothing then listens) and the login. A file that
//! parser refuses (one written for another coney version, say) still gives the four keys
//! through a tolerant scan with the same lexical rules (`key = value`, `#` starts a comment)
//! that ignores every other key.

use crate::failure::{Failure, EX_CONFIG, EX_USAGE};
use crate::http::Target;
use std::path::Path;

pub const DEFAULT_CONFIG: &str = "/etc/coney/coney.conf";
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 15672;
pub const DEFAULT_USER: &str = "guest";
pub const URL_ENV: &str = "CONEYCTL_URL";

/// What the command line said about the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFlags {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// --config FILE: must be readable. Without it the default file is used if it exists.
    pub config: Option<String>,
}

/// Endpoint settings from one source; None where the source says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prefix: Option<String>,
}

impl Partial {
    /// Fills what `self` lacks from `lower`.
    fn or(self, lower: Partial) -> Partial {
        Partial {
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            username: self.username.or(lower.username),
            password: self.password.or(lower.password),
            prefix: self.prefix.or(lower.prefix),
        }
    }
}

/// The endpoint to use, plus notes worth adding to a connection or login failure (such as a
/// config file that could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub target: Target,
    pub prefix: String,
    pub notes: Vec<String>,
}

/// Resolves the endpoint from the flags, the environment's `CONEYCTL_URL` and the config file.
pub fn resolve(flags: &EndpointFlags, url: Option<&str>) -> Result<Resolved, Failure> {
    let mut notes = Vec::new();
    let from_flags = Partial {
        host: flags.host.clone(),
        port: flags.port,
        username: flags.username.clone(),
        password: flags.password.clone(),
        prefix: None,
    };
    let from_url = match url {
        Some(u) if !u.is_empty() => {
            parse_url(u).map_err(|why| Failure::error(EX_USAGE, format!("{URL_ENV}: {why}")))?
        }
        _ => Partial::default(),
    };
    let from_config = match &flags.config {
        Some(path) => match read_config(Path::new(path)) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(Failure::error(
                    EX_CONFIG,
                    format!("cannot read {path}: no such file"),
                ))
            }
            Err(why) => return Err(Failure::error(EX_CONFIG, why)),
        },
        None => match read_config(Path::new(DEFAULT_CONFIG)) {
            Ok(found) => found.unwrap_or_default(),
            Err(why) => {
                notes.push(format!("(the default config file was not used: {why})"));
                FromConfig::default()
            }
        },
    };
    notes.extend(from_config.notes);
    let from_config = from_config.partial;
    let p = from_flags.or(from_url).or(from_config);
    Ok(Resolved {
        target: Target {
            host: p.host.unwrap_or_else(|| DEFAULT_HOST.into()),
            port: p.port.unwrap_or(DEFAULT_PORT),
            username: p.username.unwrap_or_else(|| DEFAULT_USER.into()),
            password: p.password.unwrap_or_else(|| DEFAULT_USER.into()),
        },
        prefix: p.prefix.unwrap_or_default(),
        notes,
    })
}

/// Parses `http://[user[:password]@]host[:port][/prefix]`; userinfo may be percent-encoded.
pub fn parse_url(url: &str) -> Result<Partial, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err("https is not supported; coneyctl speaks plain HTTP".into())
        }
        _ => return Err(format!("'{url}' is not an http:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((n, p)) => (Some(percent_decode(n)?), Some(percent_decode(p)?)),
            None => (Some(percent_decode(u)?), None),
        },
        None => (None, None),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return Err(format!("'{url}' names no host"));
    }
    let path = path.strip_suffix("/api").unwrap_or(path);
    Ok(Partial {
        host: Some(host),
        port,
        username,
        password,
        prefix: Some(path.to_string()),
    })
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("'{p}' is not a port"))
    };
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{s}': unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("'{s}' is not host:port")),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(parse_port(p)?))),
        None => Ok((s.to_string(), None)),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once decoded"))
}

/// What a broker config file says about the endpoint, and what is worth telling the user if
/// the API then cannot be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromConfig {
    pub partial: Partial,
    pub notes: Vec<String>,
}

/// Reads the endpoint settings from a broker config file. Ok(None): there is no such file.
/// Err: it exists but cannot be read, or a setting coneyctl needs is malformed.
pub fn read_config(path: &Path) -> Result<Option<FromConfig>, String> {
    let name = path.display();
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| format!("{name}: is not UTF-8 text"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {name}: {e}")),
    };
    let mut found = FromConfig {
        partial: scan_config(&text).map_err(|why| format!("{name}:{why}"))?,
        notes: Vec::new(),
    };
    // The broker's parser is the authority on the keys it knows.
    let mut config = coney::config::Config::default();
    if coney::config_file::load(path, &mut config).is_ok() {
        let p = &mut found.partial;
        match config.management.addr {
            Some(addr) => {
                p.host = Some(reachable(addr.ip()));
                p.port = Some(addr.port());
            }
            None => found.notes.push(format!(
                "({name} switches the broker's management API off: management.enabled = false)"
            )),
        }
        p.username = Some(config.default_user);
        p.password = Some(config.default_pass);
    }
    Ok(Some(found))
}

/// The address to connect to for a listener on `ip`: a listener on every address is reached
/// on loopback.
fn reachable(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => DEFAULT_HOST.to_string(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "::1".to_string(),
        other => other.to_string(),
    }
}

/// Picks the four keys coneyctl needs out of rabbitmq.conf-style text, ignoring the rest.
/// Errors are `LINE: KEY: message`.
pub fn scan_config(text: &str) -> Result<Partial, String> {
    let mut found = Partial::default();
    for (index, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = content.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let bad = |what: &str| format!("{}: {key}: '{value}' is not {what}", index + 1);
        match key {
            "management.tcp.port" => {
                found.port = Some(
                    value
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(|| bad("a port"))?,
                );
            }
            "management.tcp.ip" => {
                let ip: std::net::IpAddr = value.parse().map_err(|_| bad("an IP address"))?;
                found.host = Some(reachable(ip));
            }
            "default_user" => found.username = Some(value.to_string()),
            "default_pass" => found.password = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four keys are found with the broker's lexical rules; other keys are left alone.
    #[test]
    fn scan_finds_management_keys() {
        let text = "# comment\nlisteners.tcp.default = 127.0.0.1:5672\n\
                    management.tcp.port = 15690   # trailing comment\n\
                    management.tcp.ip = 0.0.0.0\ndefault_user = admin\ndefault_pass = s3cret\n\
                    management.tcp.unknown = x\n";
        let p = scan_config(text).unwrap();
        assert_eq!(p.port, Some(15690));
        assert_eq!(p.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.username.as_deref(), Some("admin"));
        assert_eq!(p.password.as_deref(), Some("s3cret"));
        assert_eq!(
            scan_config("management.tcp.ip = ::\n")
                .unwrap()
                .host
                .as_deref(),
            Some("::1")
        );
    }

    /// A malformed management setting is an error naming the line, not a silent default.
    #[test]
    fn scan_refuses_bad_values() {
        assert_eq!(
            scan_config("\nmanagement.tcp.port = 99999\n").unwrap_err(),
            "2: management.tcp.port: '99999' is not a port"
        );
        assert!(scan_config("management.tcp.ip = localhost").is_err());
    }

    /// CONEYCTL_URL gives host, port, percent-decoded credentials and a path prefix.
    #[test]
    fn url_parsing() {
        let p = parse_url("http://ad%40min:p%3Ass@mq.example:15673/rabbitmq/").unwrap();
        assert_eq!(p.host.as_deref(), Some("mq.example"));
        assert_eq!(p.port, Some(15673));
        assert_eq!(p.username.as_deref(), Some("ad@min"));
        assert_eq!(p.password.as_deref(), Some("p:ss"));
        assert_eq!(p.prefix.as_deref(), Some("/rabbitmq"));
        let p = parse_url("http://[::1]:15672/api").unwrap();
        assert_eq!((p.host.as_deref(), p.port), (Some("::1"), Some(15672)));
        assert_eq!(p.prefix.as_deref(), Some(""));
        assert!(parse_url("https://h").is_err());
        assert!(parse_url("h:15672").is_err());
        assert!(parse_url("http://h:0").is_err());
        assert!(parse_url("http://:15672").is_err());
    }

    /// Flags beat the URL, the URL beats the config file, the file beats the defaults.
    #[test]
    fn precedence() {
        let dir = std::env::temp_dir().join(format!("coneyctl-endpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("coney.conf");
        std::fs::write(
            &conf,
            "management.tcp.port = 15001\ndefault_user = fileuser\ndefault_pass = filepass\n",
        )
        .unwrap();
        let flags = EndpointFlags {
            host: Some("10.0.0.1".into()),
            config: Some(conf.display().to_string()),
            ..Default::default()
        };
        let r = resolve(&flags, Some("http://urluser@10.9.9.9")).unwrap();
        assert_eq!(r.target.host, "10.0.0.1");
        assert_eq!(r.target.port, 15001);
        assert_eq!(r.target.username, "urluser");
        assert_eq!(r.target.password, "filepass");
        let missing = EndpointFlags {
            config: Some(dir.join("nope.conf").display().to_string()),
            ..Default::default()
        };
        assert_eq!(resolve(&missing, None).unwrap_err().exit_code(), EX_CONFIG);
        assert_eq!(read_config(&dir.join("nope.conf")), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file the broker accepts is read by the broker's parser: its management address (a
    /// listener on 0.0.0.0 reached on loopback) and login; a management API switched off is
    /// noted. A file it refuses still gives the four keys.
    #[test]
    fn config_read_by_the_brokers_parser() {
        let dir = std::env::temp_dir().join(format!("coneyctl-parser-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("coney.conf");
        let read = |text: &str| {
            std::fs::write(&conf, text).unwrap();
            read_config(&conf).unwrap().unwrap()
        };
        let found = read("management.tcp.ip = 0.0.0.0\nmanagement.tcp.port = 15990\n");
        assert_eq!(found.partial.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(found.partial.port, Some(15990));
        assert_eq!(found.partial.username.as_deref(), Some("guest"));
        assert!(found.notes.is_empty());
        let off = read("management.enabled = false\n");
        assert_eq!(off.partial.port, None);
        assert!(
            off.notes[0].contains("management.enabled = false"),
            "{off:?}"
        );
        let refused = read("management.tcp.port = 15991\nno_such_key = 1\ndefault_user = u\n");
        assert_eq!(refused.partial.port, Some(15991));
        assert_eq!(refused.partial.username.as_deref(), Some("u"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
