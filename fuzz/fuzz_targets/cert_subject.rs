//! Fuzz target `cert_subject`: any bytes as a client certificate for SASL EXTERNAL's user
//! name (`coney::auth::cert_subject`), both ways RabbitMQ forms it: a name or None, never a
//! panic, and a distinguished name is printable ASCII (every other byte is escaped as `\XX`).
#![no_main]

use coney::auth::cert_subject::{login_name, CertLoginFrom};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(dn) = login_name(data, CertLoginFrom::DistinguishedName) {
        assert!(dn.bytes().all(|b| (32..127).contains(&b)), "{dn:?}");
    }
    let _ = login_name(data, CertLoginFrom::CommonName);
});
