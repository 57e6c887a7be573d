//! Fuzz target `dns`: any bytes as the UDP answer to the stub resolver's question
//! (`coney::net::dns::parse`), as a hostile or broken DNS server could send it: an answer,
//! "not ours" or an error, never a panic or a loop, and never more than `ADDRS_MAX` addresses.
//! The transaction id is taken from the input so that most inputs reach the question and
//! answer sections; each input is read as the answer to an A and to an AAAA question.
#![no_main]

use coney::dns::{parse, Reply, ADDRS_MAX, TYPE_A, TYPE_AAAA};
use libfuzzer_sys::fuzz_target;

/// The name the seeds ask about (fuzz/corpus/dns).
const NAME: &str = "rabbit.example.com";

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let id = u16::from_be_bytes([data[0], data[1]]);
    for qtype in [TYPE_A, TYPE_AAAA] {
        if let Ok(Some(Reply::Addrs(a))) = parse(data, id, NAME, qtype) {
            assert!(a.len() <= ADDRS_MAX, "{} addresses", a.len());
        }
    }
});
