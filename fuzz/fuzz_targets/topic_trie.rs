//! Fuzz target `topic_trie`: runs the input as a program of bind, unbind and match operations
//! on a `TopicTrie` over a small alphabet (`a`, `b`, `c`, `*`, `#`, the empty word), comparing every
//! answer with a naive model, and checks that unbinding everything prunes back to the root.
#![no_main]

use coney::broker::topic_trie::TopicTrie;
use libfuzzer_sys::fuzz_target;

const WORDS: [&[u8]; 6] = [b"a", b"b", b"c", b"*", b"#", b""];
/// Bounds keep the naive matcher (exponential in `#` count) and each run fast.
const KEY_WORDS_MAX: usize = 6;
const OPS_MAX: usize = 256;
const DESTS: u8 = 4;

fuzz_target!(|data: &[u8]| {
    let mut trie: TopicTrie<u8> = TopicTrie::new();
    let mut model: Vec<(Vec<u8>, u8)> = Vec::new();
    let mut bytes = data.iter().copied();
    let mut out = Vec::new();
    for _ in 0..OPS_MAX {
        let Some(op) = bytes.next() else { break };
        let key = read_key(&mut bytes);
        let dest = (op >> 2) % DESTS;
        match op & 3 {
            0 | 1 => {
                let fresh = !model.iter().any(|(k, d)| *k == key && *d == dest);
                assert_eq!(trie.bind(&key, dest), fresh, "bind {:?} -> {dest}", show(&key));
                if fresh {
                    model.push((key, dest));
                }
            }
            2 => {
                let at = model.iter().position(|(k, d)| *k == key && *d == dest);
                assert_eq!(trie.unbind(&key, dest), at.is_some(), "unbind {:?} -> {dest}", show(&key));
                if let Some(i) = at {
                    model.swap_remove(i);
                }
            }
            _ => {
                out.clear();
                trie.match_into(&key, &mut out);
                out.sort_unstable();
                out.dedup();
                let mut expected: Vec<u8> = model
                    .iter()
                    .filter(|(pattern, _)| matches(&words(pattern), &words(&key)))
                    .map(|(_, d)| *d)
                    .collect();
                expected.sort_unstable();
                expected.dedup();
                assert_eq!(out, expected, "match {:?} with bindings {:?}", show(&key), shown(&model));
            }
        }
        assert_eq!(trie.len(), model.len());
        assert!(trie.node_count() <= 1 + model.iter().map(|(k, _)| words(k).len()).sum::<usize>(),
            "{} nodes for bindings {:?}: pruning leaked", trie.node_count(), shown(&model));
    }
    for (key, dest) in model.drain(..) {
        assert!(trie.unbind(&key, dest), "final unbind {:?} -> {dest}", show(&key));
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1, "trie not pruned back to the root");
});

/// A count byte then that many word bytes, joined with '.'.
fn read_key(bytes: &mut impl Iterator<Item = u8>) -> Vec<u8> {
    let n = bytes.next().map_or(0, |b| b as usize % (KEY_WORDS_MAX + 1));
    let mut key = Vec::new();
    for i in 0..n {
        if i > 0 {
            key.push(b'.');
        }
        key.extend_from_slice(WORDS[bytes.next().unwrap_or(0) as usize % WORDS.len()]);
    }
    key
}

/// RabbitMQ's split: the empty key has no words, otherwise every '.' separates two words.
fn words(key: &[u8]) -> Vec<&[u8]> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split(|&b| b == b'.').collect()
    }
}

/// The definition of topic matching, written directly: `*` is one word, `#` zero or more.
fn matches(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
    match (pattern.first(), key.first()) {
        (None, None) => true,
        (Some(&b"#"), _) => matches(&pattern[1..], key) || (!key.is_empty() && matches(pattern, &key[1..])),
        (Some(&b"*"), Some(_)) => matches(&pattern[1..], &key[1..]),
        (Some(p), Some(k)) if p == k => matches(&pattern[1..], &key[1..]),
        _ => false,
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn shown(model: &[(Vec<u8>, u8)]) -> Vec<(String, u8)> {
    model.iter().map(|(k, d)| (show(k), *d)).collect()
}
