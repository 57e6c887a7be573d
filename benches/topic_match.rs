//! Topic trie benches: matching routing keys against 10 and 100,000 bindings (exact keys and
//! `*`/`#` wildcards), into a reused vector as the broker does. Run: `cargo bench --bench topic_match`.

mod support;

use coney::broker::topic_trie::TopicTrie;
use std::hint::black_box;

/// Routing keys cycled through per timed call.
const KEYS: usize = 1024;

/// `n` binding keys over three-word keys `a{x}.b{y}.c{z}`: mostly exact, one in eight `*`,
/// one in sixteen `#`, so matching walks word, star and hash edges.
fn bindings(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (x, y, z) = (i % 100, (i / 100) % 100, (i / 10_000) % 100);
            match i % 16 {
                0 => format!("a{x}.#"),
                1 | 9 => format!("a{x}.*.c{z}"),
                _ => format!("a{x}.b{y}.c{z}"),
            }
        })
        .collect()
}

fn routing_keys() -> Vec<String> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..KEYS)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            format!("a{}.b{}.c{}", s % 100, (s >> 8) % 100, (s >> 16) % 10)
        })
        .collect()
}

fn main() {
    let b = support::Bench::from_args();
    let keys = routing_keys();
    for n in [10usize, 100_000] {
        let mut trie = TopicTrie::new();
        for (i, k) in bindings(n).iter().enumerate() {
            trie.bind(k.as_bytes(), i as u32);
        }
        let mut out = Vec::with_capacity(64);
        let mut matched = 0usize;
        b.run(
            &format!("topic/match_into, {n} bindings"),
            KEYS as u64,
            || {
                for k in &keys {
                    out.clear();
                    trie.match_into(black_box(k.as_bytes()), &mut out);
                    matched += out.len();
                }
            },
        );
        black_box(matched);
    }
    let keys_100k = bindings(100_000);
    b.run("topic/bind 100,000 bindings (per binding)", 100_000, || {
        let mut trie = TopicTrie::new();
        for (i, k) in keys_100k.iter().enumerate() {
            trie.bind(k.as_bytes(), i as u32);
        }
        black_box(trie.len());
    });
}
