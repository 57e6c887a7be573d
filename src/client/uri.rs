//! AMQP URIs as RabbitMQ's Erlang client reads them (`amqp_uri`): `amqp://` with no host is
//! the local broker; `amqp://user:pass@host:port/vhost` a remote one, with user, password and
//! vhost percent-decoded, guest/guest and port 5672 by default, and the caller's default vhost
//! when there is no path (the shovel passes [`DEFAULT_VHOST`], as RabbitMQ's shovel does; an
//! empty path, `amqp://host/`, is the vhost ""). The query's
//! `heartbeat` is taken; other query keys and `amqps` are refused by name (not implemented).

use crate::limits::CLIENT_HEARTBEAT_SECS;

/// Where a URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This broker (`amqp://` with no host): reached without credentials.
    Local,
    Remote {
        host: String,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    pub target: Target,
    pub user: String,
    pub password: String,
    pub vhost: String,
    pub heartbeat_secs: u16,
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding; a malformed escape or non-UTF-8 result is an error.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(format!("bad percent-encoding in '{s}'"));
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' does not decode to UTF-8"))
}

/// RabbitMQ's error for a URI it cannot use: `"URI" not a valid URI: REASON`.
fn invalid(uri: &str, reason: impl std::fmt::Display) -> String {
    format!("\"{uri}\" not a valid URI: {reason}")
}

/// The vhost of a URI without a path, in RabbitMQ's `amqp_uri`.
pub const DEFAULT_VHOST: &str = "/";

/// Parses `uri`; `default_vhost` is used when it has no path.
pub fn parse(uri: &str, default_vhost: &str) -> Result<AmqpUri, String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(invalid(uri, "no scheme"));
    };
    match scheme {
        "amqp" => {}
        "amqps" => return Err(invalid(uri, "amqps is not supported by coney's shovel yet")),
        other => {
            return Err(invalid(
                uri,
                format!("{{{{unexpected_uri_scheme,\"{other}\"}},\"{uri}\"}}"),
            ))
        }
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut heartbeat_secs = CLIENT_HEARTBEAT_SECS;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "heartbeat" => {
                heartbeat_secs = v
                    .parse()
                    .map_err(|_| invalid(uri, format!("heartbeat '{v}' is not a number")))?
            }
            _ => {
                return Err(invalid(
                    uri,
                    format!("query parameter '{k}' is not supported by coney"),
                ))
            }
        }
    }
    let vhost = match path {
        None => default_vhost.to_owned(),
        Some(p) if p.contains('/') => return Err(invalid(uri, "a vhost path with '/'")),
        Some(p) => percent_decode(p).map_err(|e| invalid(uri, e))?,
    };
    let (user, password) = match userinfo {
        None => ("guest".to_owned(), "guest".to_owned()),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (
                percent_decode(user).map_err(|e| invalid(uri, e))?,
                percent_decode(pass).map_err(|e| invalid(uri, e))?,
            )
        }
    };
    if hostport.is_empty() {
        if userinfo.is_some() {
            return Err(invalid(uri, "credentials without a host"));
        }
        return Ok(AmqpUri {
            target: Target::Local,
            user,
            password,
            vhost,
            heartbeat_secs,
        });
    }
    let (host, port) = split_host_port(hostport).map_err(|e| invalid(uri, e))?;
    Ok(AmqpUri {
        target: Target::Remote { host, port },
        user,
        password,
        vhost,
        heartbeat_secs,
    })
}

fn split_host_port(hp: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hp.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or("unclosed '['")?;
        (h, rest.strip_prefix(':'))
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    let port = match port {
        None | Some("") => 5672,
        Some(p) => p.parse().map_err(|_| format!("bad port '{p}'"))?,
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((percent_decode(host)?, port))
}

/// The URI as RabbitMQ's shovel status shows it: without the user and password.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ's forms: local with or without a vhost path, credentials and vhost
    /// percent-decoded, defaults, IPv6, refusals by name.
    #[test]
    fn uris_parse_as_rabbitmq_reads_them() {
        let u = parse("amqp://", "v").expect("local");
        assert_eq!((u.target, u.vhost.as_str()), (Target::Local, "v"));
        assert_eq!(parse("amqp:///x%2Fy", "v").expect("local").vhost, "x/y");
        let u = parse("amqp://u%40s:p%3Aw@h:5673/v%2f", "d").expect("remote");
        assert_eq!(
            u.target,
            Target::Remote {
                host: "h".into(),
                port: 5673
            }
        );
        assert_eq!((u.user.as_str(), u.password.as_str()), ("u@s", "p:w"));
        assert_eq!(u.vhost, "v/");
        let u = parse("amqp://h", "d").expect("defaults");
        assert_eq!((u.user.as_str(), u.vhost.as_str()), ("guest", "d"));
        assert_eq!(parse("amqp://h/", "d").expect("empty").vhost, "");
        let u = parse("amqp://[::1]:5/?heartbeat=5", "d").expect("v6");
        assert_eq!(u.heartbeat_secs, 5);
        assert!(parse("amqps://h", "d").unwrap_err().contains("amqps"));
        assert!(parse("foo://x", "d")
            .unwrap_err()
            .contains("unexpected_uri_scheme"));
        assert!(parse("amqp://h?frame_max=1", "d")
            .unwrap_err()
            .contains("frame_max"));
        assert!(parse("amqp://h/%zz", "d").is_err());
    }

    /// The status shows URIs without credentials, as RabbitMQ's shovel_management does.
    #[test]
    fn redact_drops_credentials() {
        assert_eq!(
            redact("amqp://u:p@127.0.0.1:5730/%2F"),
            "amqp://127.0.0.1:5730/%2F"
        );
        assert_eq!(redact("amqp://"), "amqp://");
        assert_eq!(redact("amqp://h/v@x"), "amqp://h/v@x");
    }
}
