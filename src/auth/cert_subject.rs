//! What coney reads from a client certificate, as RabbitMQ forms it (`rabbit_ssl` /
//! `rabbit_cert_info`): the user name SASL EXTERNAL takes (rabbitmq_auth_mechanism_ssl: the
//! subject distinguished name in RabbitMQ's string form, or the subject's common names), and
//! the subject, issuer and validity the management API shows for a TLS connection
//! (`peer_cert_subject`, `peer_cert_issuer`, `peer_cert_validity`). A small DER walker over
//! the certificate (only as far as the subject), not an X.509 library: the certificate was
//! already parsed and verified by rustls/webpki, we need three fields, and this is ~200 lines
//! that never panic on any input (tested on every prefix and on flipped bytes).
//!
//! RabbitMQ's form of a name (observed on 3.10.8): the RDNs in reverse order joined by `,`, the
//! attributes of a multi-valued RDN in their encoded order joined by `+`, `TYPE=value` with
//! RabbitMQ's type names (`CN`, `O`, `OU`, `EMAILADDRESS`, ...; any other type in dotted
//! decimal), values escaped as RFC 4514 says plus every byte below 32 or from 126 up as
//! `\XX` (so UTF-8 text shows as `\C3\A9`). Its validity: `START - END`, a UTCTime as
//! `2026-12-04T13:56:48Z` (always "20" before the two-digit year) and a GeneralizedTime as
//! Erlang prints the decoded term, `{generalTime,"20540421135743Z"}`.

/// Where the user name comes from (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertLoginFrom {
    /// The subject distinguished name (RabbitMQ's default).
    #[default]
    DistinguishedName,
    /// The subject's common names, joined by `,` when there are several.
    CommonName,
}

/// The login name for `from`, or None when the certificate has none (RabbitMQ: "no name
/// found") or cannot be read.
pub fn login_name(cert_der: &[u8], from: CertLoginFrom) -> Option<String> {
    let subject = subject(cert_der)?;
    match from {
        CertLoginFrom::DistinguishedName => distinguished_name(subject),
        CertLoginFrom::CommonName => common_names(subject),
    }
}

/// One DER element: its tag and contents, and the bytes after it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur in the fields we walk
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The contents of tbsCertificate's issuer Name, Validity and subject Name: Certificate →
/// tbsCertificate → (version), serial, signature, issuer, validity, subject.
struct TbsNames<'a> {
    issuer: &'a [u8],
    validity: &'a [u8],
    subject: &'a [u8],
}

fn tbs_names(cert: &[u8]) -> Option<TbsNames<'_>> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(cert)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..2 {
        tbs = element(tbs)?.2; // serial, signature
    }
    let (SEQUENCE, issuer, tbs) = element(tbs)? else {
        return None;
    };
    let (SEQUENCE, validity, tbs) = element(tbs)? else {
        return None;
    };
    let (SEQUENCE, subject, _) = element(tbs)? else {
        return None;
    };
    Some(TbsNames {
        issuer,
        validity,
        subject,
    })
}

/// The contents of the subject Name.
fn subject(cert: &[u8]) -> Option<&[u8]> {
    Some(tbs_names(cert)?.subject)
}

/// A client certificate as the management API shows it on its connection (RabbitMQ's
/// `peer_cert_subject`, `peer_cert_issuer`, `peer_cert_validity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub validity: String,
}

/// The subject, issuer and validity in RabbitMQ's forms; None if the certificate cannot be
/// read that far (never for one rustls verified).
pub fn describe(cert_der: &[u8]) -> Option<CertInfo> {
    let names = tbs_names(cert_der)?;
    Some(CertInfo {
        subject: distinguished_name(names.subject)?,
        issuer: distinguished_name(names.issuer)?,
        validity: validity(names.validity)?,
    })
}

/// `notBefore - notAfter` as rabbit_cert_info:validity writes it.
fn validity(seq: &[u8]) -> Option<String> {
    let (start_tag, start, rest) = element(seq)?;
    let (end_tag, end, rest) = element(rest)?;
    if !rest.is_empty() {
        return None;
    }
    Some(format!(
        "{} - {}",
        time_text(start_tag, start)?,
        time_text(end_tag, end)?
    ))
}

/// One Time as RabbitMQ's format_asn1_value writes it: a UTCTime `YYMMDDHHMMSSZ` as
/// `20YY-MM-DDTHH:MM:SSZ`; any other UTCTime, and every GeneralizedTime, as Erlang's `~p`
/// prints the decoded term (`{generalTime,"20540421135743Z"}`).
fn time_text(tag: u8, s: &[u8]) -> Option<String> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    match tag {
        UTC_TIME if s.len() == 13 && s[12] == b'Z' => {
            let c = |i: usize| char::from(s[i]);
            Some(format!(
                "20{}{}-{}{}-{}{}T{}{}:{}{}:{}{}Z",
                c(0),
                c(1),
                c(2),
                c(3),
                c(4),
                c(5),
                c(6),
                c(7),
                c(8),
                c(9),
                c(10),
                c(11)
            ))
        }
        UTC_TIME => Some(format!("{{utcTime,{}}}", erlang_string(s))),
        GENERALIZED_TIME => Some(format!("{{generalTime,{}}}", erlang_string(s))),
        _ => None,
    }
}

/// A list of bytes as Erlang's `~p` prints it: `"text"` when every byte is printable ASCII
/// (`"` and `\` escaped), else `[50,48,...]`.
fn erlang_string(s: &[u8]) -> String {
    if s.iter().all(|b| (32..127).contains(b)) {
        let mut out = String::from("\"");
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push('\\');
            }
            out.push(char::from(b));
        }
        out.push('"');
        out
    } else {
        let parts: Vec<String> = s.iter().map(u8::to_string).collect();
        format!("[{}]", parts.join(","))
    }
}

/// The attributes of each RDN of a Name, in encoded order: (type OID contents, value DER).
fn rdns(mut name: &[u8]) -> Option<Vec<Vec<(&[u8], &[u8])>>> {
    let mut out = Vec::new();
    while !name.is_empty() {
        let (SET, mut set, rest) = element(name)? else {
            return None;
        };
        name = rest;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, atv, rest) = element(set)? else {
                return None;
            };
            set = rest;
            let (OID, oid, value) = element(atv)? else {
                return None;
            };
            let (_, _, after) = element(value)?;
            if !after.is_empty() {
                return None;
            }
            rdn.push((oid, value));
        }
        out.push(rdn);
    }
    Some(out)
}

/// An OID's contents in dotted decimal.
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        if acc > u64::MAX >> 8 {
            return None;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    if arcs.is_empty() || oid.last().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let parts: Vec<String> = arcs.iter().map(u64::to_string).collect();
    Some(parts.join("."))
}

/// RabbitMQ's names for attribute types (rabbit_cert_info:format_rdn); others print dotted.
fn type_name(dotted: &str) -> Option<&'static str> {
    Some(match dotted {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// A value as the bytes of its text in UTF-8 (RabbitMQ's format_asn1_value): strings are
/// decoded (Teletex read as Latin-1, BMP as UCS-2, Universal as UCS-4); any other value
/// shows as Erlang prints a binary, `<<19,4,...>>`.
fn value_text(value: &[u8]) -> Vec<u8> {
    let Some((tag, s, _)) = element(value) else {
        return Vec::new();
    };
    let from_chars = |chars: &mut dyn Iterator<Item = u32>| -> Vec<u8> {
        let mut out = String::new();
        for c in chars {
            out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
        out.into_bytes()
    };
    match tag {
        // UTF8String, PrintableString, IA5String: the bytes as they are.
        0x0c | 0x13 | 0x16 => s.to_vec(),
        0x14 => from_chars(&mut s.iter().map(|&b| u32::from(b))),
        0x1e => from_chars(
            &mut s
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))),
        ),
        0x1c => from_chars(
            &mut s
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
        ),
        _ => {
            let parts: Vec<String> = value.iter().map(u8::to_string).collect();
            format!("<<{}>>", parts.join(",")).into_bytes()
        }
    }
}

/// RabbitMQ's escape_rdn_value: RFC 4514's escapes, and every byte outside 32..126 as hex.
fn escape(value: &[u8], out: &mut String) {
    let last = value.len().saturating_sub(1);
    for (i, &c) in value.iter().enumerate() {
        let special = match c {
            b' ' | b'#' if i == 0 => true,
            b' ' => i == last,
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => true,
            _ => false,
        };
        if special {
            out.push('\\');
            out.push(c as char);
        } else if !(32..126).contains(&c) {
            out.push_str(&format!("\\{c:02X}"));
        } else {
            out.push(c as char);
        }
    }
}

fn distinguished_name(subject: &[u8]) -> Option<String> {
    let mut out = String::new();
    for (i, rdn) in rdns(subject)?.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (oid, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let dotted = dotted(oid)?;
            out.push_str(type_name(&dotted).unwrap_or(&dotted));
            out.push('=');
            escape(&value_text(value), &mut out);
        }
    }
    Some(out)
}

/// The common names in certificate order, unescaped, joined by `,` (RabbitMQ's
/// common_name mode); None when there is none.
fn common_names(subject: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let names: Vec<Vec<u8>> = rdns(subject)?
        .into_iter()
        .flatten()
        .filter(|(oid, _)| *oid == CN)
        .map(|(_, value)| value_text(value))
        .collect();
    if names.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&names.join(&b',')).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER with a length that fits the short or the two-byte long form.
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if contents.len() < 0x80 {
            v.push(contents.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(contents);
        v
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(SEQUENCE, &[tlv(OID, oid), tlv(tag, value)].concat())
    }

    /// A certificate skeleton whose subject holds `rdns` (each a list of attributes).
    fn cert(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let name: Vec<u8> = rdns
            .iter()
            .map(|r| tlv(SET, &r.concat()))
            .collect::<Vec<_>>()
            .concat();
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(
                SEQUENCE,
                &tlv(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]),
            ),
            tlv(SEQUENCE, &tlv(SET, &atv(&[0x55, 4, 3], 0x0c, b"issuer"))),
            tlv(
                SEQUENCE,
                &[tlv(0x17, b"260101000000Z"), tlv(0x17, b"270101000000Z")].concat(),
            ),
            tlv(SEQUENCE, &name),
            tlv(SEQUENCE, &[]),
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat(),
        )
    }

    const CN: &[u8] = &[0x55, 4, 3];
    const O: &[u8] = &[0x55, 4, 10];
    const OU: &[u8] = &[0x55, 4, 11];
    const STREET: &[u8] = &[0x55, 4, 9];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1];
    const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 1, 25];

    fn dn(rdns: &[Vec<Vec<u8>>]) -> Option<String> {
        login_name(&cert(rdns), CertLoginFrom::DistinguishedName)
    }

    /// The names RabbitMQ 3.10.8 logged for the same subjects (made with openssl req -subj).
    #[test]
    fn distinguished_names_as_rabbitmq_writes_them() {
        assert_eq!(
            dn(&[vec![atv(CN, 0x0c, b"guest")], vec![atv(O, 0x0c, b"client")]]).as_deref(),
            Some("O=client,CN=guest")
        );
        assert_eq!(
            dn(&[
                vec![atv(O, 0x0c, b"Acme+Co")],
                vec![atv(OU, 0x0c, b"a=b;c")],
                vec![atv(CN, 0x0c, b"Jo \"J\" <x>#1")],
                vec![atv(EMAIL, 0x16, b"jo@x.org")],
                vec![atv(DC, 0x16, b"example")],
                vec![atv(STREET, 0x0c, b"Main")],
            ])
            .as_deref(),
            Some("2.5.4.9=Main,DC=example,EMAILADDRESS=jo@x.org,CN=Jo \\\"J\\\" \\<x\\>#1,OU=a=b\\;c,O=Acme\\+Co")
        );
        assert_eq!(
            dn(&[
                vec![atv(CN, 0x0c, b" lead\\, trail ")],
                vec![atv(O, 0x0c, "Ünïcode".as_bytes())]
            ])
            .as_deref(),
            Some("O=\\C3\\9Cn\\C3\\AFcode,CN=\\ lead\\\\\\, trail\\ ")
        );
        assert_eq!(
            dn(&[vec![atv(CN, 0x0c, b"#x~y ")], vec![atv(O, 0x0c, b" ")]]).as_deref(),
            Some("O=\\ ,CN=\\#x\\7Ey\\ ")
        );
        // T61String é (Latin-1 0xE9) as UTF-8; a multi-valued RDN in encoded order.
        assert_eq!(
            dn(&[vec![atv(CN, 0x14, b"t\xe9l")]]).as_deref(),
            Some("CN=t\\C3\\A9l")
        );
        assert_eq!(
            dn(&[
                vec![atv(CN, 0x0c, b"a"), atv(OU, 0x0c, b"b")],
                vec![atv(O, 0x0c, b"multi")]
            ])
            .as_deref(),
            Some("O=multi,CN=a+OU=b")
        );
        assert_eq!(
            dn(&[vec![atv(CN, 0x1e, &[0, b'h', 0, b'i'])]]).as_deref(),
            Some("CN=hi")
        );
    }

    /// Certificates made by openssl 3 (tests/fixtures/client-certs) give exactly the names
    /// RabbitMQ 3.10.8 logged for them ("EXTERNAL login refused: user '...'").
    #[test]
    fn real_certificates_as_rabbitmq_named_them() {
        let cases: [(&[u8], &str); 5] = [
            (
                include_bytes!("../../tests/fixtures/client-certs/c1.der"),
                "O=client,CN=guest",
            ),
            (
                include_bytes!("../../tests/fixtures/client-certs/c2.der"),
                "SN=Sur,GIVENNAME=Given,2.5.4.9=Main,L=Town,TITLE=T,SERIALNUMBER=42,UID=u1,\
                 DC=example,EMAILADDRESS=jo@x.org,CN=Jo \\\"J\\\" \\<x\\>#1,OU=a=b\\;c,\
                 O=Acme\\+Co,ST=Some\\, State,C=US",
            ),
            (
                include_bytes!("../../tests/fixtures/client-certs/c6.der"),
                "O=multi,CN=a+OU=b",
            ),
            (
                include_bytes!("../../tests/fixtures/client-certs/c8.der"),
                "CN=t\\C3\\A9l",
            ),
            (
                include_bytes!("../../tests/fixtures/client-certs/c9.der"),
                "2.3.4=IA5:hello,CN=\\C3\\A9bmp",
            ),
        ];
        for (der, want) in cases {
            assert_eq!(
                login_name(der, CertLoginFrom::DistinguishedName).as_deref(),
                Some(want)
            );
        }
        let c1 = include_bytes!("../../tests/fixtures/client-certs/c1.der");
        assert_eq!(
            login_name(c1, CertLoginFrom::CommonName).as_deref(),
            Some("guest")
        );
    }

    /// Certificates made by openssl 3, signed by the CA of tests/tls's Pki: what RabbitMQ
    /// 3.10.8's management API reported as peer_cert_subject, peer_cert_issuer and
    /// peer_cert_validity for pika amqps connections presenting them (GET /api/connections,
    /// verify_peer; c11 was made with -days 10000, so its notAfter is a GeneralizedTime).
    #[test]
    fn described_as_rabbitmq_management_shows_them() {
        let cases: [(&[u8], &str, &str, &str); 2] = [
            (
                include_bytes!("../../tests/fixtures/client-certs/c10.der"),
                "O=coney test,CN=tls-user",
                "CN=coney test CA",
                "2026-12-04T13:56:48Z - 2026-12-06T13:56:48Z",
            ),
            (
                include_bytes!("../../tests/fixtures/client-certs/c11.der"),
                "OU=a,CN=long lived",
                "CN=coney test CA",
                "2026-12-04T13:57:43Z - {generalTime,\"20540421135743Z\"}",
            ),
        ];
        for (der, subject, issuer, validity) in cases {
            let info = describe(der).expect("a readable certificate");
            assert_eq!(info.subject, subject);
            assert_eq!(info.issuer, issuer);
            assert_eq!(info.validity, validity);
        }
        let c2 = describe(include_bytes!("../../tests/fixtures/client-certs/c2.der"));
        assert_eq!(c2.map(|i| i.issuer).as_deref(), Some("CN=test CA"));
        // The skeleton's issuer and UTCTime validity.
        let info = describe(&cert(&[vec![atv(CN, 0x0c, b"guest")]])).expect("readable");
        assert_eq!(info.subject, "CN=guest");
        assert_eq!(info.issuer, "CN=issuer");
        assert_eq!(info.validity, "2026-01-01T00:00:00Z - 2027-01-01T00:00:00Z");
    }

    /// Time forms RabbitMQ does not rewrite are printed as Erlang prints the decoded term.
    #[test]
    fn times_as_erlang_prints_them() {
        assert_eq!(
            time_text(0x17, b"991231235959Z").as_deref(),
            Some("2099-12-31T23:59:59Z")
        );
        assert_eq!(
            time_text(0x17, b"9912312359Z").as_deref(),
            Some("{utcTime,\"9912312359Z\"}")
        );
        assert_eq!(
            time_text(0x18, b"20540421135743Z").as_deref(),
            Some("{generalTime,\"20540421135743Z\"}")
        );
        assert_eq!(
            time_text(0x18, b"a\"\\\x01").as_deref(),
            Some("{generalTime,[97,34,92,1]}")
        );
        assert_eq!(
            time_text(0x18, b"a\"\\").as_deref(),
            Some("{generalTime,\"a\\\"\\\\\"}")
        );
        assert_eq!(time_text(0x04, b"x"), None);
    }

    /// common_name mode: the CNs unescaped in certificate order, joined by ","; none is no name.
    #[test]
    fn common_names_joined_in_certificate_order() {
        let cn = |rdns: &[Vec<Vec<u8>>]| login_name(&cert(rdns), CertLoginFrom::CommonName);
        assert_eq!(
            cn(&[
                vec![atv(CN, 0x0c, b"first")],
                vec![atv(CN, 0x13, b"second")],
                vec![atv(O, 0x0c, b"o")]
            ])
            .as_deref(),
            Some("first,second")
        );
        assert_eq!(cn(&[vec![atv(CN, 0x0c, b"a, b")]]).as_deref(), Some("a, b"));
        assert_eq!(cn(&[vec![atv(O, 0x0c, b"noCN")]]), None);
    }

    /// Every truncation and every single flipped byte of a certificate gives a name (and a
    /// description) or None, never a panic.
    #[test]
    fn damaged_certificates_never_panic() {
        let good = cert(&[vec![
            atv(CN, 0x0c, b"guest"),
            atv(OU, 0x1c, &[0, 0, 0, 0x41]),
        ]]);
        for len in 0..good.len() {
            let _ = login_name(&good[..len], CertLoginFrom::DistinguishedName);
            let _ = login_name(&good[..len], CertLoginFrom::CommonName);
            assert_eq!(describe(&good[..len]), None);
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                let _ = login_name(&bad, CertLoginFrom::DistinguishedName);
                let _ = login_name(&bad, CertLoginFrom::CommonName);
                let _ = describe(&bad);
            }
        }
        assert_eq!(login_name(&[], CertLoginFrom::DistinguishedName), None);
        assert_eq!(dotted(&[0x80]), None);
        assert_eq!(dotted(&[0x2a, 0x86, 0x48]).as_deref(), Some("1.2.840"));
    }
}
