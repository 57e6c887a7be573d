//! Fuzz target `cert_subject`: any bytes as a client certificate for SASL EXTERNAL's user
//! name and the management API's peer_cert_* fields (`coney::auth::cert_subject`), both ways
//! RabbitMQ forms the name and its subject/issuer/validity description: a value or None,
//! never a panic, and a distinguished name is printable ASCII (every other byte is escaped as
//! `\XX`), as are the described subject and issuer, which are the login name's form.
#![no_main]

use coney::auth::cert_subject::{describe, login_name, CertLoginFrom};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dn = login_name(data, CertLoginFrom::DistinguishedName);
    if let Some(dn) = &dn {
        assert!(dn.bytes().all(|b| (32..127).contains(&b)), "{dn:?}");
    }
    let _ = login_name(data, CertLoginFrom::CommonName);
    if let Some(info) = describe(data) {
        assert_eq!(dn.as_deref(), Some(info.subject.as_str()));
        assert!(info.issuer.bytes().all(|b| (32..127).contains(&b)), "{info:?}");
    }
});
