//! Fuzz target `topic_trie`: runs the input as a program of bind, unbind and match operations
//! on a `TopicTrie` over a small alphabet (`a`, `b`, `c`, `*`, `#`, the empty word), comparing every
//! answer with a model, and checks that unbinding everything prunes back to the root. Keys are
//! short words drawn one by one, or long chains of a repeated unit (`#.#.#…`, `#.a.#.a…`, up to
//! 128 words, the most a 255-byte routing key holds), and every match must stay within the
//! automaton's work bound: at most (words + 1) × nodes node entries, whatever the patterns.
#![no_main]

use coney::broker::topic_trie::TopicTrie;
use libfuzzer_sys::fuzz_target;

const WORDS: [&[u8]; 6] = [b"a", b"b", b"c", b"*", b"#", b""];
/// Words of a key drawn word by word.
const KEY_WORDS_MAX: usize = 8;
/// Repetitions of a chain's unit (of one or two words): up to 128 words.
const CHAIN_REPEATS_MAX: usize = 64;
/// Bindings kept at once, so the model's work per match stays small.
const BINDINGS_MAX: usize = 64;
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
            0 | 1 if model.len() < BINDINGS_MAX => {
                let fresh = !model.iter().any(|(k, d)| *k == key && *d == dest);
                assert_eq!(trie.bind(&key, dest), fresh, "bind {:?} -> {dest}", show(&key));
                if fresh {
                    model.push((key, dest));
                }
            }
            0 | 1 => {}
            2 => {
                let at = model.iter().position(|(k, d)| *k == key && *d == dest);
                assert_eq!(trie.unbind(&key, dest), at.is_some(), "unbind {:?} -> {dest}", show(&key));
                if let Some(i) = at {
                    model.swap_remove(i);
                }
            }
            _ => {
                out.clear();
                let entered = trie.match_into(&key, &mut out);
                let bound = (words(&key).len() + 1) * trie.node_count();
                assert!(entered <= bound,
                    "match {:?} entered {entered} nodes, over (words + 1) × nodes = {bound}", show(&key));
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

/// A mode byte: below 192, that many (mod KEY_WORDS_MAX + 1) words follow, one byte each;
/// otherwise a chain: a unit of one or two words (two bytes) repeated up to 64 times.
fn read_key(bytes: &mut impl Iterator<Item = u8>) -> Vec<u8> {
    let mode = bytes.next().unwrap_or(0);
    let mut picked: Vec<&[u8]> = Vec::new();
    if mode < 192 {
        for _ in 0..mode as usize % (KEY_WORDS_MAX + 1) {
            picked.push(WORDS[bytes.next().unwrap_or(0) as usize % WORDS.len()]);
        }
    } else {
        let unit = bytes.next().unwrap_or(0);
        let first = WORDS[(unit & 7) as usize % WORDS.len()];
        let second = (unit & 8 != 0).then(|| WORDS[(unit >> 4) as usize % WORDS.len()]);
        let repeats = 1 + (mode as usize - 192) * CHAIN_REPEATS_MAX / 64;
        for _ in 0..repeats.min(CHAIN_REPEATS_MAX) {
            picked.push(first);
            picked.extend(second);
        }
    }
    picked.join(&b'.')
}

/// RabbitMQ's split: the empty key has no words, otherwise every '.' separates two words.
fn words(key: &[u8]) -> Vec<&[u8]> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split(|&b| b == b'.').collect()
    }
}

/// The definition of topic matching (`*` is one word, `#` zero or more), computed by dynamic
/// programming so that long keys and many `#` stay cheap: `m[i][j]` says whether
/// `pattern[i..]` matches `key[j..]`.
fn matches(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
    let (p, k) = (pattern.len(), key.len());
    let mut m = vec![vec![false; k + 1]; p + 1];
    m[p][k] = true;
    for i in (0..p).rev() {
        for j in (0..=k).rev() {
            m[i][j] = match pattern[i] {
                b"#" => m[i + 1][j] || (j < k && m[i][j + 1]),
                b"*" => j < k && m[i + 1][j + 1],
                w => j < k && key[j] == w && m[i + 1][j + 1],
            };
        }
    }
    m[0][0]
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn shown(model: &[(Vec<u8>, u8)]) -> Vec<(String, u8)> {
    model.iter().map(|(k, d)| (show(k), *d)).collect()
}
