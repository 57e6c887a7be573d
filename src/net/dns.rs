//! DNS messages for the stub resolver (RFC 1035): one A or AAAA question out, the addresses of
//! an answer in. No I/O; `net::resolver` owns the socket. Enough of the format for a recursive
//! server's answer (it follows CNAMEs and puts the target's records in the answer section),
//! and every length and pointer in a reply checked, so a hostile or broken server gets an
//! error, never a panic or a loop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const HEADER_BYTES: usize = 12;
/// The longest name on the wire (RFC 1035 2.3.4) and the longest label.
const NAME_MAX_BYTES: usize = 255;
const LABEL_MAX_BYTES: usize = 63;
/// Compression pointers followed in one name: more than a name could need is a loop.
const POINTERS_MAX: usize = 64;
/// Addresses kept from one answer: the first few are all a connect tries.
pub const ADDRS_MAX: usize = 8;

/// What a server answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The addresses of the asked type (may be empty: the name exists without such records).
    Addrs(Vec<IpAddr>),
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// The answer did not fit in a datagram (TC set).
    Truncated,
    /// Any other response code (SERVFAIL 2, REFUSED 5, …).
    Failed(u8),
}

/// The bytes of a recursive query for `name`'s records of `qtype`, with transaction `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > NAME_MAX_BYTES - 2 {
        return Err(format!("{name:?} is not a host name"));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query with recursion desired; one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        if label.is_empty() || label.len() > LABEL_MAX_BYTES {
            return Err(format!("{name:?} is not a host name"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// The reply to the query `query(id, name, qtype)`, or None if `msg` is not that reply (another
/// id, not a response, another question: a late answer to an earlier try, or spoofing).
/// Err for a reply that is malformed.
pub fn parse(msg: &[u8], id: u16, name: &str, qtype: u16) -> Result<Option<Reply>, String> {
    if msg.len() < HEADER_BYTES {
        return Ok(None);
    }
    let (flags, rcode) = (msg[2], msg[3] & 0x0f);
    if u16::from_be_bytes([msg[0], msg[1]]) != id || flags & 0x80 == 0 {
        return Ok(None);
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = HEADER_BYTES;
    if qdcount != 1 {
        return Ok(None);
    }
    let (qname, next) = read_name(msg, at)?;
    at = next;
    let q = field(msg, at, 4)?;
    let asked = u16::from_be_bytes([q[0], q[1]]);
    let want = name.strip_suffix('.').unwrap_or(name);
    if asked != qtype || !qname.eq_ignore_ascii_case(want) {
        return Ok(None);
    }
    at += 4;
    if flags & 0x02 != 0 {
        return Ok(Some(Reply::Truncated));
    }
    match rcode {
        0 => {}
        3 => return Ok(Some(Reply::NoSuchName)),
        other => return Ok(Some(Reply::Failed(other))),
    }
    let mut addrs = Vec::new();
    for _ in 0..ancount {
        let (_, next) = read_name(msg, at)?;
        let rr = field(msg, next, 10)?;
        let rtype = u16::from_be_bytes([rr[0], rr[1]]);
        let rclass = u16::from_be_bytes([rr[2], rr[3]]);
        let len = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data = field(msg, next + 10, len)?;
        at = next + 10 + len;
        if rclass != CLASS_IN || rtype != qtype || addrs.len() == ADDRS_MAX {
            continue;
        }
        match (rtype, data.len()) {
            (TYPE_A, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                addrs.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => return Err(format!("an address record of {} bytes", data.len())),
        }
    }
    Ok(Some(Reply::Addrs(addrs)))
}

/// `len` bytes of `msg` at `at`, or an error if the message is shorter.
fn field(msg: &[u8], at: usize, len: usize) -> Result<&[u8], String> {
    msg.get(at..at.saturating_add(len))
        .ok_or_else(|| "a truncated DNS message".to_owned())
}

/// The dotted name at `at` (following compression pointers), and where the bytes after it
/// start.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = field(msg, at, 1)?[0] as usize;
        if len & 0xc0 == 0xc0 {
            let low = field(msg, at + 1, 1)?[0] as usize;
            end.get_or_insert(at + 2);
            jumps += 1;
            if jumps > POINTERS_MAX {
                return Err("a DNS name with a pointer loop".to_owned());
            }
            at = ((len & 0x3f) << 8) | low;
            continue;
        }
        if len & 0xc0 != 0 {
            return Err("a DNS label of an unknown kind".to_owned());
        }
        if len == 0 {
            return Ok((name, end.unwrap_or(at + 1)));
        }
        let label = field(msg, at + 1, len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
        if name.len() > NAME_MAX_BYTES {
            return Err("a DNS name longer than 255 bytes".to_owned());
        }
        at += 1 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply built byte by byte as a recursive server sends it: the question, a CNAME, and
    /// two A records whose owner names are compression pointers.
    fn reply(id: u16, flags: [u8; 2]) -> Vec<u8> {
        let mut m = vec![
            (id >> 8) as u8,
            id as u8,
            flags[0],
            flags[1],
            0,
            1,
            0,
            3,
            0,
            0,
            0,
            0,
        ];
        m.extend_from_slice(b"\x06rabbit\x04corp\x00\x00\x01\x00\x01");
        // CNAME rabbit.corp -> mq.corp (owner: pointer to offset 12)
        m.extend_from_slice(b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x05\x02mq\xc0\x13");
        // two A records for mq.corp (owner: pointer to the CNAME's data at offset 41)
        m.extend_from_slice(b"\xc0\x29\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x07");
        m.extend_from_slice(b"\xc0\x29\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x08");
        m
    }

    /// The query is RFC 1035's bytes: id, RD set, one question, labels, type A, class IN.
    #[test]
    fn query_bytes() {
        let q = query(0x1234, "rabbit.corp.", TYPE_A).unwrap();
        assert_eq!(q, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06rabbit\x04corp\x00\x00\x01\x00\x01");
        assert!(query(1, "a..b", TYPE_A).is_err());
        assert!(query(1, &"x".repeat(64), TYPE_A).is_err());
        assert!(query(1, "", TYPE_A).is_err());
    }

    /// The A records after a CNAME are the answer; the CNAME itself is skipped.
    #[test]
    fn addresses_after_a_cname() {
        let r = parse(&reply(7, [0x81, 0x80]), 7, "Rabbit.corp", TYPE_A).unwrap();
        assert_eq!(
            r,
            Some(Reply::Addrs(vec![
                "10.0.0.7".parse().unwrap(),
                "10.0.0.8".parse().unwrap()
            ]))
        );
    }

    /// Another id, a query rather than a response, or another question is not our reply.
    #[test]
    fn not_our_reply() {
        assert_eq!(
            parse(&reply(8, [0x81, 0x80]), 7, "rabbit.corp", TYPE_A).unwrap(),
            None
        );
        assert_eq!(
            parse(&reply(7, [0x01, 0x00]), 7, "rabbit.corp", TYPE_A).unwrap(),
            None
        );
        assert_eq!(
            parse(&reply(7, [0x81, 0x80]), 7, "other.corp", TYPE_A).unwrap(),
            None
        );
        assert_eq!(
            parse(&reply(7, [0x81, 0x80]), 7, "rabbit.corp", TYPE_AAAA).unwrap(),
            None
        );
    }

    /// NXDOMAIN, SERVFAIL and TC are told apart.
    #[test]
    fn response_codes() {
        let p = |flags| parse(&reply(7, flags), 7, "rabbit.corp", TYPE_A).unwrap();
        assert_eq!(p([0x81, 0x83]), Some(Reply::NoSuchName));
        assert_eq!(p([0x81, 0x82]), Some(Reply::Failed(2)));
        assert_eq!(p([0x83, 0x80]), Some(Reply::Truncated));
    }

    /// Every prefix of a reply, and a pointer loop, is an error or "not ours", never a panic.
    #[test]
    fn malformed_replies_are_errors() {
        let full = reply(7, [0x81, 0x80]);
        for n in 0..full.len() {
            let _ = parse(&full[..n], 7, "rabbit.corp", TYPE_A);
        }
        let mut looped = full.clone();
        looped[12] = 0xc0;
        looped[13] = 0x0c;
        assert!(parse(&looped, 7, "rabbit.corp", TYPE_A).is_err());
    }
}
