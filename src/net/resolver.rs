//! Host names to addresses without blocking the loop's thread: /etc/hosts, then a stub DNS
//! client (UDP, `net::dns`) that asks the nameservers of /etc/resolv.conf with its search,
//! ndots, timeout and attempts options, as glibc's resolver does. A `Lookup` owns one
//! non-blocking UDP socket that the reactor polls like any other; a DNS server that is slow or
//! never answers costs a timer, not a stalled broker (getaddrinfo would block every client
//! for up to timeout × attempts × servers).

use crate::net::dns::{self, Reply, TYPE_A, TYPE_AAAA};
use mio::net::UdpSocket;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The files read at each lookup (small, local reads; they change under a running broker).
const RESOLV_CONF: &str = "/etc/resolv.conf";
const HOSTS: &str = "/etc/hosts";
/// Names another resolv.conf, e.g. for tests; its `nameserver` lines may carry a port
/// (`127.0.0.1:5353`), which glibc's syntax has no room for.
pub const RESOLV_CONF_ENV: &str = "CONEY_RESOLV_CONF";
/// glibc's caps (resolv.h: MAXNS 3, MAXDNSRCH 6; timeout at most 30 s, attempts at most 5),
/// so a resolv.conf cannot make one lookup unbounded.
const SERVERS_MAX: usize = 3;
const SEARCH_MAX: usize = 6;
const TIMEOUT_MAX_SECS: u64 = 30;
const ATTEMPTS_MAX: u32 = 5;
/// Datagrams read per readable event; the rest wait for the next turn.
const DATAGRAMS_PER_READ_MAX: usize = 16;
const DATAGRAM_MAX_BYTES: usize = 512;

/// What /etc/resolv.conf says, with glibc's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut c = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") if c.nameservers.len() < SERVERS_MAX => {
                    if let Some(addr) = words.next().and_then(nameserver) {
                        c.nameservers.push(addr);
                    }
                }
                Some("search") | Some("domain") => {
                    c.search = words.take(SEARCH_MAX).map(str::to_owned).collect();
                }
                Some("options") => words.for_each(|w| c.option(w)),
                _ => {}
            }
        }
        if c.nameservers.is_empty() {
            // glibc's default: a server on this host.
            c.nameservers
                .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        c
    }

    fn option(&mut self, word: &str) {
        let (key, value) = word.split_once(':').unwrap_or((word, ""));
        let n = value.parse::<u64>().ok();
        match (key, n) {
            ("ndots", Some(n)) => self.ndots = n.min(15) as usize,
            ("timeout", Some(n)) => {
                self.timeout = Duration::from_secs(n.clamp(1, TIMEOUT_MAX_SECS))
            }
            ("attempts", Some(n)) => self.attempts = n.clamp(1, ATTEMPTS_MAX as u64) as u32,
            _ => {}
        }
    }

    fn load() -> ResolvConf {
        let path = std::env::var(RESOLV_CONF_ENV).unwrap_or_else(|_| RESOLV_CONF.to_owned());
        ResolvConf::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }

    /// The names to ask, in glibc's order: as given first when it has at least ndots dots
    /// (or ends with a dot, which also means no search), else after the search domains.
    fn candidates(&self, host: &str) -> Vec<String> {
        if let Some(fqdn) = host.strip_suffix('.') {
            return vec![fqdn.to_owned()];
        }
        let searched = self
            .search
            .iter()
            .map(|d| format!("{host}.{}", d.trim_end_matches('.')));
        if host.matches('.').count() >= self.ndots {
            std::iter::once(host.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(host.to_owned())).collect()
        }
    }
}

/// `ip`, `ip:port` or `[ipv6]:port`.
fn nameserver(word: &str) -> Option<SocketAddr> {
    word.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .or_else(|_| word.parse::<SocketAddr>())
        .ok()
}

/// The first address /etc/hosts gives `host` (names compare without case), if any.
pub fn hosts_lookup(text: &str, host: &str) -> Option<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let ip = words.next()?.parse::<IpAddr>().ok()?;
        words
            .any(|name| name.eq_ignore_ascii_case(host))
            .then_some(ip)
    })
}

/// How a lookup starts: at once from an address literal or /etc/hosts, or with a query sent.
pub enum Started {
    Ready(IpAddr),
    Pending(Lookup),
    Failed(String),
}

/// How a pending lookup stands after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Ready(IpAddr),
    Failed(String),
}

/// One name being resolved over DNS: which candidate name, which record type (A, then AAAA
/// when a name has no A record), and which try (server × attempt) it is at.
pub struct Lookup {
    host: String,
    conf: ResolvConf,
    names: Vec<String>,
    name: usize,
    qtype: u16,
    try_no: u32,
    id: u16,
    sock: UdpSocket,
    deadline: Instant,
    /// Why the last candidate name gave nothing (for the error if all of them do).
    last_error: String,
}

/// Starts resolving `host` at `now`.
pub fn start(host: &str, now: Instant) -> Started {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Started::Ready(ip);
    }
    if let Some(ip) = hosts_lookup(&std::fs::read_to_string(HOSTS).unwrap_or_default(), host) {
        return Started::Ready(ip);
    }
    start_dns(host, ResolvConf::load(), now)
}

/// Starts a DNS lookup of `host` with the servers and options of `conf`.
pub fn start_dns(host: &str, conf: ResolvConf, now: Instant) -> Started {
    let any: SocketAddr = if conf.nameservers[0].is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    };
    let sock = match UdpSocket::bind(any) {
        Ok(s) => s,
        Err(e) => return Started::Failed(format!("{host}: DNS socket: {e}")),
    };
    let names = conf.candidates(host);
    let mut l = Lookup {
        host: host.to_owned(),
        conf,
        names,
        name: 0,
        qtype: TYPE_A,
        try_no: 0,
        id: 0,
        sock,
        deadline: now,
        last_error: String::new(),
    };
    match l.ask(now) {
        Progress::Failed(e) => Started::Failed(e),
        _ => Started::Pending(l),
    }
}

impl Lookup {
    /// The socket to register for readable events.
    pub fn socket(&mut self) -> &mut UdpSocket {
        &mut self.sock
    }

    /// When `timer` is due: the current try's answer is late.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reads the datagrams that arrived (a bounded number per call).
    pub fn readable(&mut self, now: Instant) -> Progress {
        let mut buf = [0u8; DATAGRAM_MAX_BYTES];
        for _ in 0..DATAGRAMS_PER_READ_MAX {
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable from a server: as a timeout, try the next one.
                Err(_) => return self.next_try(now),
            };
            if !self.conf.nameservers.contains(&from) {
                continue;
            }
            let name = &self.names[self.name];
            match dns::parse(&buf[..n], self.id, name, self.qtype) {
                Ok(None) => continue,
                Ok(Some(reply)) => return self.answered(reply, now),
                Err(e) => {
                    self.last_error = format!("{}: {e}", self.host);
                    return self.next_try(now);
                }
            }
        }
        Progress::Pending
    }

    /// The deadline passed: ask again (the next server, or the next attempt).
    pub fn timer(&mut self, now: Instant) -> Progress {
        if now < self.deadline {
            return Progress::Pending;
        }
        self.last_error = format!(
            "{}: no answer from the DNS servers {:?}",
            self.host, self.conf.nameservers
        );
        self.next_try(now)
    }

    fn answered(&mut self, reply: Reply, now: Instant) -> Progress {
        match reply {
            Reply::Addrs(a) if !a.is_empty() => Progress::Ready(a[0]),
            Reply::Addrs(_) if self.qtype == TYPE_A => {
                self.qtype = TYPE_AAAA;
                self.try_no = 0;
                self.ask(now)
            }
            Reply::Addrs(_) | Reply::NoSuchName => {
                self.last_error = format!("{}: no such host (DNS)", self.host);
                self.next_name(now)
            }
            Reply::Truncated => Progress::Failed(format!(
                "{}: the DNS answer did not fit in a datagram (use an address or /etc/hosts)",
                self.host
            )),
            Reply::Failed(rcode) => {
                self.last_error = format!("{}: DNS server failure (rcode {rcode})", self.host);
                self.next_try(now)
            }
        }
    }

    fn next_name(&mut self, now: Instant) -> Progress {
        self.name += 1;
        self.qtype = TYPE_A;
        self.try_no = 0;
        if self.name == self.names.len() {
            return Progress::Failed(std::mem::take(&mut self.last_error));
        }
        self.ask(now)
    }

    fn next_try(&mut self, now: Instant) -> Progress {
        self.try_no += 1;
        let tries = self.conf.attempts * self.conf.nameservers.len() as u32;
        if self.try_no >= tries {
            return Progress::Failed(std::mem::take(&mut self.last_error));
        }
        self.ask(now)
    }

    /// Sends the current question to the current try's server; a new id per question, kept
    /// across its retries so a late answer to an earlier try still counts.
    fn ask(&mut self, now: Instant) -> Progress {
        if self.try_no == 0 {
            let mut id = [0u8; 2];
            if let Err(e) = crate::entropy::fill(&mut id) {
                return Progress::Failed(format!("{}: DNS query id: {e}", self.host));
            }
            self.id = u16::from_ne_bytes(id);
        }
        let query = match dns::query(self.id, &self.names[self.name], self.qtype) {
            Ok(q) => q,
            Err(e) => return Progress::Failed(e),
        };
        let servers = &self.conf.nameservers;
        let server = servers[self.try_no as usize % servers.len()];
        self.deadline = now + self.conf.timeout;
        match self.sock.send_to(&query, server) {
            Ok(_) => Progress::Pending,
            // A server this host cannot reach: its timeout passes and the next is asked.
            Err(e) => {
                self.last_error = format!("{}: DNS server {server}: {e}", self.host);
                Progress::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;

    /// resolv.conf as glibc reads it: servers (capped at 3, ports as our extension), search,
    /// options clamped to glibc's limits.
    #[test]
    fn parses_resolv_conf() {
        let c = ResolvConf::parse(
            "# c\nnameserver 10.0.0.1\nnameserver 127.0.0.1:5353\nnameserver ::1\nnameserver 10.9.9.9\n\
             search corp example.org\noptions ndots:2 timeout:99 attempts:0 rotate\n",
        );
        assert_eq!(c.nameservers.len(), 3);
        assert_eq!(c.nameservers[1], "127.0.0.1:5353".parse().unwrap());
        assert_eq!(c.nameservers[2], "[::1]:53".parse().unwrap());
        assert_eq!(c.search, ["corp", "example.org"]);
        assert_eq!((c.ndots, c.timeout.as_secs(), c.attempts), (2, 30, 1));
        assert_eq!(
            ResolvConf::parse("").nameservers,
            ["127.0.0.1:53".parse().unwrap()]
        );
    }

    /// glibc's order of names: as given first with enough dots, search domains first without,
    /// and a trailing dot means exactly that name.
    #[test]
    fn candidate_names() {
        let c = ResolvConf::parse("search corp\n");
        assert_eq!(c.candidates("mq"), ["mq.corp", "mq"]);
        assert_eq!(c.candidates("mq.eu"), ["mq.eu", "mq.eu.corp"]);
        assert_eq!(c.candidates("mq.eu."), ["mq.eu"]);
    }

    /// /etc/hosts: first match, any alias, comments ignored, case-insensitive.
    #[test]
    fn hosts_file() {
        let h = "# x\n127.0.0.1 localhost\n10.1.2.3 Rabbit rabbit.corp # central\n::1 v6only\n";
        assert_eq!(
            hosts_lookup(h, "rabbit.CORP"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(hosts_lookup(h, "v6only"), Some("::1".parse().unwrap()));
        assert_eq!(hosts_lookup(h, "central"), None);
    }

    /// The answer of a server (a std socket answering with hand-made bytes) for the search
    /// name after the bare name was NXDOMAIN, then a timeout with a silent server.
    #[test]
    fn resolves_over_udp_and_times_out() {
        let server = StdUdp::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let conf = ResolvConf::parse(&format!(
            "nameserver {addr}\nsearch corp\noptions ndots:0 timeout:1 attempts:1\n"
        ));
        let t0 = Instant::now();
        let Started::Pending(mut l) = start_dns("mq", conf.clone(), t0) else {
            panic!("not pending")
        };
        // First question: "mq" (ndots 0). Answer NXDOMAIN.
        let mut buf = [0u8; 512];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[12..n], b"\x02mq\x00\x00\x01\x00\x01");
        let mut r = buf[..n].to_vec();
        r[2] = 0x81;
        r[3] = 0x83;
        server.send_to(&r, from).unwrap();
        let progress = wait(&mut l);
        assert_eq!(progress, Progress::Pending);
        // Second question: "mq.corp". Answer one A record.
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[12..n], b"\x02mq\x04corp\x00\x00\x01\x00\x01");
        let mut r = buf[..n].to_vec();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x01\x02\x03");
        server.send_to(&r, from).unwrap();
        assert_eq!(wait(&mut l), Progress::Ready("10.1.2.3".parse().unwrap()));

        // A server that never answers: a failure after timeout × attempts, not before.
        let Started::Pending(mut l) = start_dns("mq.", conf, t0) else {
            panic!("not pending")
        };
        assert_eq!(l.timer(t0), Progress::Pending);
        match l.timer(t0 + Duration::from_secs(1)) {
            Progress::Failed(e) => assert!(e.contains("no answer"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// Reads until the lookup moves on (the datagram may take a moment on loopback).
    fn wait(l: &mut Lookup) -> Progress {
        let until = Instant::now() + Duration::from_secs(5);
        let before = l.name;
        while Instant::now() < until {
            match l.readable(Instant::now()) {
                Progress::Pending if l.name == before => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => return other,
            }
        }
        Progress::Pending
    }
}
