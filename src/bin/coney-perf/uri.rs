//! `amqp://user:pass@host:port/vhost` (and `amqps://`) URIs as RabbitMQ's clients read them: percent-decoded
//! user, password and vhost, defaults guest/guest, localhost, 5672 and "/". No I/O.

/// Where and as whom a load generator connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    pub user: String,
    pub pass: String,
    pub host: String,
    pub port: u16,
    pub vhost: String,
    /// amqps://: TLS to the broker (the CA comes from `--cacert`).
    pub tls: bool,
}

impl Default for AmqpUri {
    fn default() -> Self {
        AmqpUri {
            user: "guest".into(),
            pass: "guest".into(),
            host: "localhost".into(),
            port: 5672,
            vhost: "/".into(),
            tls: false,
        }
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once decoded"))
}

impl AmqpUri {
    pub fn parse(uri: &str) -> Result<Self, String> {
        let mut out = AmqpUri::default();
        let rest = match (uri.strip_prefix("amqp://"), uri.strip_prefix("amqps://")) {
            (Some(rest), _) => rest,
            (None, Some(rest)) => {
                out.tls = true;
                out.port = 5671;
                rest
            }
            _ => {
                return Err(format!(
                    "'{uri}': only amqp:// and amqps:// URIs are supported"
                ))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let hostport = match authority.rfind('@') {
            Some(i) => {
                let userinfo = &authority[..i];
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                out.user = percent_decode(u)?;
                out.pass = percent_decode(p)?;
                &authority[i + 1..]
            }
            None => authority,
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [ipv6]:port
            let (h, tail) = h
                .split_once(']')
                .ok_or_else(|| format!("'{uri}': unclosed '['"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if !host.is_empty() {
            out.host = host.to_string();
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            out.port = p.parse().map_err(|_| format!("'{uri}': bad port '{p}'"))?;
        }
        // An empty path means the default vhost: what users of `amqp://host/` expect.
        if let Some(v) = path.filter(|v| !v.is_empty()) {
            out.vhost = percent_decode(v)?;
        }
        Ok(out)
    }

    /// host:port for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_uris() {
        let u = AmqpUri::parse("amqp://bob:s%40cret@10.0.0.1:5673/%2Fprod").expect("uri");
        assert_eq!(
            u,
            AmqpUri {
                user: "bob".into(),
                pass: "s@cret".into(),
                host: "10.0.0.1".into(),
                port: 5673,
                vhost: "/prod".into(),
                tls: false,
            }
        );
        let d = AmqpUri::parse("amqp://127.0.0.1:5999").expect("uri");
        assert_eq!(
            (d.user.as_str(), d.port, d.vhost.as_str()),
            ("guest", 5999, "/")
        );
        assert_eq!(AmqpUri::parse("amqp://h/").expect("uri").vhost, "/");
        assert_eq!(
            AmqpUri::parse("amqp://[::1]:1/v").expect("uri").addr(),
            "[::1]:1"
        );
        let s = AmqpUri::parse("amqps://localhost").expect("uri");
        assert!(s.tls && s.port == 5671);
        assert!(AmqpUri::parse("http://x").is_err());
        assert!(AmqpUri::parse("amqp://h:notaport").is_err());
    }
}
