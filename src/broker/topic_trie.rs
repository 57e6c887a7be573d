//! Topic routing compiled into a trie of binding-key words (RabbitMQ's trie): each edge is an
//! exact word, `*` (exactly one word) or `#` (zero or more words). Binding adds a path,
//! unbinding prunes nodes left without bindings or children.
//!
//! Matching runs the trie as an automaton over the routing key's words: a set of active
//! nodes, advanced one word at a time, each node entered at most once per word. A `#` node
//! stays active on every word and is entered together with its parent (it may match zero
//! words). The cost is O(words × active nodes), at most words × trie size whatever the
//! patterns: RabbitMQ's backtracking walk, which tries every split at each `#`, is
//! exponential in the number of `#` in a binding key, and one hostile binding such as
//! `#.#.#.#.#.#.#.#.#` would stop the loop. The scratch sets are kept between calls, so
//! matching does not allocate once they have grown.
//!
//! Words are split on '.', and the empty key has no words (so `#` matches it and `*` does not),
//! as in RabbitMQ. Each destination of a node is yielded once; a destination bound under two
//! matching keys appears twice, and the caller deduplicates.

use std::cell::RefCell;
use std::collections::HashMap;

type NodeId = u32;
const ROOT: NodeId = 0;

struct Node<T> {
    words: HashMap<Box<[u8]>, NodeId>,
    star: Option<NodeId>,
    hash: Option<NodeId>,
    /// Destinations whose binding key ends here (a destination bound once per key).
    bindings: Vec<T>,
    parent: NodeId,
    /// The edge from the parent, for pruning.
    edge: Edge,
}

#[derive(Clone, PartialEq)]
enum Edge {
    Root,
    Word(Box<[u8]>),
    Star,
    Hash,
}

/// A trie of topic binding keys to destinations of type `T`.
pub struct TopicTrie<T> {
    nodes: Vec<Option<Node<T>>>,
    free: Vec<NodeId>,
    binding_count: usize,
    scratch: RefCell<Scratch>,
}

/// The matcher's working sets, reused between calls.
#[derive(Default)]
struct Scratch {
    /// Nodes active after the words consumed so far.
    current: Vec<NodeId>,
    next: Vec<NodeId>,
    /// `entered[node] == step` when the node is already in the set being built.
    entered: Vec<u32>,
    step: u32,
}

impl Scratch {
    /// Starts building a new set; every node counts as not yet entered.
    fn next_step(&mut self, node_slots: usize) {
        if self.entered.len() < node_slots {
            self.entered.resize(node_slots, 0);
        }
        self.step = self.step.wrapping_add(1);
        if self.step == 0 {
            self.entered.fill(0);
            self.step = 1;
        }
    }
}

impl<T: Copy + PartialEq> Default for TopicTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits off the first word. `None` means no words are left.
fn next_word(rest: Option<&[u8]>) -> Option<(&[u8], Option<&[u8]>)> {
    let s = rest?;
    Some(match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    })
}

/// The words of a key as `Option<&[u8]>`: `None` for the empty key (no words).
fn words_of(key: &[u8]) -> Option<&[u8]> {
    if key.is_empty() {
        None
    } else {
        Some(key)
    }
}

impl<T: Copy + PartialEq> TopicTrie<T> {
    pub fn new() -> Self {
        let root = Node {
            words: HashMap::new(),
            star: None,
            hash: None,
            bindings: Vec::new(),
            parent: ROOT,
            edge: Edge::Root,
        };
        TopicTrie {
            nodes: vec![Some(root)],
            free: Vec::new(),
            binding_count: 0,
            scratch: RefCell::new(Scratch::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.binding_count
    }

    pub fn is_empty(&self) -> bool {
        self.binding_count == 0
    }

    fn node(&self, id: NodeId) -> &Node<T> {
        self.nodes[id as usize].as_ref().expect("live trie node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<T> {
        self.nodes[id as usize].as_mut().expect("live trie node")
    }

    fn child(&self, id: NodeId, edge: &Edge) -> Option<NodeId> {
        let n = self.node(id);
        match edge {
            Edge::Star => n.star,
            Edge::Hash => n.hash,
            Edge::Word(w) => n.words.get(w).copied(),
            Edge::Root => None,
        }
    }

    fn add_child(&mut self, parent: NodeId, edge: Edge) -> NodeId {
        let node = Node {
            words: HashMap::new(),
            star: None,
            hash: None,
            bindings: Vec::new(),
            parent,
            edge: edge.clone(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as NodeId
            }
        };
        let p = self.node_mut(parent);
        match edge {
            Edge::Star => p.star = Some(id),
            Edge::Hash => p.hash = Some(id),
            Edge::Word(w) => {
                p.words.insert(w, id);
            }
            Edge::Root => unreachable!("root is never a child"),
        }
        id
    }

    fn edge_of(word: &[u8]) -> Edge {
        match word {
            b"*" => Edge::Star,
            b"#" => Edge::Hash,
            w => Edge::Word(w.into()),
        }
    }

    /// Binds `dest` under `key`; returns false if that exact binding already existed.
    pub fn bind(&mut self, key: &[u8], dest: T) -> bool {
        let mut at = ROOT;
        let mut rest = words_of(key);
        while let Some((word, tail)) = next_word(rest) {
            let edge = Self::edge_of(word);
            at = match self.child(at, &edge) {
                Some(c) => c,
                None => self.add_child(at, edge),
            };
            rest = tail;
        }
        let n = self.node_mut(at);
        if n.bindings.contains(&dest) {
            return false;
        }
        n.bindings.push(dest);
        self.binding_count += 1;
        true
    }

    /// Removes the binding of `dest` under `key`; returns false if there was none.
    pub fn unbind(&mut self, key: &[u8], dest: T) -> bool {
        let mut at = ROOT;
        let mut rest = words_of(key);
        while let Some((word, tail)) = next_word(rest) {
            match self.child(at, &Self::edge_of(word)) {
                Some(c) => at = c,
                None => return false,
            }
            rest = tail;
        }
        let n = self.node_mut(at);
        let Some(pos) = n.bindings.iter().position(|d| *d == dest) else {
            return false;
        };
        n.bindings.swap_remove(pos);
        self.binding_count -= 1;
        self.prune(at);
        true
    }

    /// Removes empty nodes from `at` upwards.
    fn prune(&mut self, mut at: NodeId) {
        while at != ROOT {
            let n = self.node(at);
            if !n.bindings.is_empty() || !n.words.is_empty() || n.star.is_some() || n.hash.is_some()
            {
                return;
            }
            let (parent, edge) = (n.parent, n.edge.clone());
            let p = self.node_mut(parent);
            match edge {
                Edge::Star => p.star = None,
                Edge::Hash => p.hash = None,
                Edge::Word(w) => {
                    p.words.remove(&w);
                }
                Edge::Root => {}
            }
            self.nodes[at as usize] = None;
            self.free.push(at);
            at = parent;
        }
    }

    /// Appends every destination whose binding key matches `routing_key` to `out`. Returns
    /// the number of times a node was entered, the work the match did: each node is entered at
    /// most once per word (and once before the first), so it is at most
    /// (words + 1) × `node_count()`, whatever the patterns (the fuzzer checks this bound).
    pub fn match_into(&self, routing_key: &[u8], out: &mut Vec<T>) -> usize {
        let Ok(mut guard) = self.scratch.try_borrow_mut() else {
            // Only reachable if matching re-entered itself, which nothing does.
            return 0;
        };
        let s = &mut *guard;
        let slots = self.nodes.len();
        s.current.clear();
        s.next_step(slots);
        self.enter(ROOT, &mut s.current, &mut s.entered, s.step);
        let mut rest = words_of(routing_key);
        let mut entered = s.current.len();
        while let Some((word, tail)) = next_word(rest) {
            if s.current.is_empty() {
                return entered;
            }
            s.next.clear();
            s.next_step(slots);
            for i in 0..s.current.len() {
                let at = s.current[i];
                let n = self.node(at);
                if let Some(&c) = n.words.get(word) {
                    self.enter(c, &mut s.next, &mut s.entered, s.step);
                }
                if let Some(c) = n.star {
                    self.enter(c, &mut s.next, &mut s.entered, s.step);
                }
                if n.edge == Edge::Hash {
                    // `#` swallows this word too and stays where it is.
                    self.enter(at, &mut s.next, &mut s.entered, s.step);
                }
            }
            std::mem::swap(&mut s.current, &mut s.next);
            entered += s.current.len();
            rest = tail;
        }
        for &at in &s.current {
            out.extend_from_slice(&self.node(at).bindings);
        }
        entered
    }

    /// Adds `at` to the set being built, with the `#` children it reaches by matching zero
    /// words (a chain for keys such as `#.#`).
    fn enter(&self, mut at: NodeId, set: &mut Vec<NodeId>, entered: &mut [u32], step: u32) {
        loop {
            let slot = &mut entered[at as usize];
            if *slot == step {
                return;
            }
            *slot = step;
            set.push(at);
            match self.node(at).hash {
                Some(h) => at = h,
                None => return,
            }
        }
    }

    /// Node count, for tests of pruning.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(t: &TopicTrie<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        t.match_into(key.as_bytes(), &mut out);
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn tutorial_bindings_route_as_rabbitmq() {
        let mut t = TopicTrie::new();
        t.bind(b"*.orange.*", 1);
        t.bind(b"*.*.rabbit", 2);
        t.bind(b"lazy.#", 2);
        assert_eq!(matches(&t, "quick.orange.rabbit"), [1, 2]);
        assert_eq!(matches(&t, "lazy.orange.elephant"), [1, 2]);
        assert_eq!(matches(&t, "quick.orange.fox"), [1]);
        assert_eq!(matches(&t, "lazy.brown.fox"), [2]);
        assert_eq!(matches(&t, "lazy.pink.rabbit"), [2]);
        assert_eq!(matches(&t, "quick.brown.fox"), [] as [u32; 0]);
        assert_eq!(matches(&t, "orange"), [] as [u32; 0]);
        assert_eq!(matches(&t, "quick.orange.male.rabbit"), [] as [u32; 0]);
        assert_eq!(matches(&t, "lazy.orange.male.rabbit"), [2]);
    }

    #[test]
    fn hash_matches_zero_or_more_words_and_star_exactly_one() {
        let mut t = TopicTrie::new();
        t.bind(b"old.#", 1);
        t.bind(b"old.*", 2);
        t.bind(b"#", 3);
        t.bind(b"*", 4);
        t.bind(b"", 5);
        t.bind(b"a.#.b", 6);
        t.bind(b"#.z", 7);
        assert_eq!(matches(&t, "old.boy.python"), [1, 3]);
        assert_eq!(matches(&t, "old.boy"), [1, 2, 3]);
        assert_eq!(matches(&t, "old"), [1, 3, 4]);
        assert_eq!(matches(&t, ""), [3, 5]);
        assert_eq!(matches(&t, "a.b"), [3, 6]);
        assert_eq!(matches(&t, "a.x.y.b"), [3, 6]);
        assert_eq!(matches(&t, "a.b.z"), [3, 7]);
        assert_eq!(matches(&t, "z"), [3, 4, 7]);
        // Empty words are words: "a..b" has three.
        assert_eq!(matches(&t, "a..b"), [3, 6]);
        assert_eq!(matches(&t, "."), [3]);
    }

    #[test]
    fn unbind_prunes_back_to_the_root() {
        let mut t = TopicTrie::new();
        assert!(t.bind(b"a.b.c", 1));
        assert!(!t.bind(b"a.b.c", 1));
        assert!(t.bind(b"a.*.#", 2));
        assert_eq!(t.len(), 2);
        assert!(t.unbind(b"a.b.c", 1));
        assert!(!t.unbind(b"a.b.c", 1));
        assert!(!t.unbind(b"x", 1));
        assert!(t.unbind(b"a.*.#", 2));
        assert_eq!(t.node_count(), 1);
        assert!(t.is_empty());
        assert_eq!(matches(&t, "a.b.c"), [] as [u32; 0]);
    }

    /// Cross-checks the trie against a direct recursive matcher on many generated keys.
    #[test]
    fn agrees_with_a_reference_matcher() {
        fn reference(pattern: &[&str], key: &[&str]) -> bool {
            match (pattern.first(), key.first()) {
                (None, None) => true,
                (Some(&"#"), _) => {
                    reference(&pattern[1..], key)
                        || (!key.is_empty() && reference(pattern, &key[1..]))
                }
                (Some(&"*"), Some(_)) => reference(&pattern[1..], &key[1..]),
                (Some(p), Some(k)) if p == k => reference(&pattern[1..], &key[1..]),
                _ => false,
            }
        }
        let split = |s: &'static str| -> Vec<&'static str> {
            if s.is_empty() {
                vec![]
            } else {
                s.split('.').collect()
            }
        };
        let patterns = [
            "#", "*", "a", "a.*", "*.a", "#.a", "a.#", "a.#.a", "*.#", "#.*", "#.#", "a.*.#.b", "",
            "b.b", "*.*.*",
        ];
        let keys = [
            "", "a", "b", "a.a", "a.b", "b.a", "a.b.a", "a.a.a.a", "a.x.y.b", "b.b", "x.y.z",
            "a..b",
        ];
        let mut t = TopicTrie::new();
        for (i, p) in patterns.iter().enumerate() {
            t.bind(p.as_bytes(), i as u32);
        }
        for k in keys {
            let expected: Vec<u32> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| reference(&split(p), &split(k)))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(matches(&t, k), expected, "key {k:?}");
        }
    }

    /// The binding from the security report (nine `#`) and a 100-word key: the old walk tried
    /// every split at each `#` and never finished; the automaton touches each node once per
    /// word. The answer is checked, and the time bound is three orders of magnitude loose.
    #[test]
    fn many_hashes_and_a_long_key_match_in_linear_time() {
        let mut t = TopicTrie::new();
        t.bind(b"#.#.#.#.#.#.#.#.#", 1);
        t.bind(b"#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.z", 2);
        t.bind(b"*.*.*.#.*.*.#.#.*", 3);
        let key = vec!["a"; 100].join(".");
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(matches(&t, &key), [1, 3]);
        }
        let entered = t.match_into(key.as_bytes(), &mut Vec::new());
        assert!(
            entered <= 101 * t.node_count(),
            "{entered} node entries for 100 words and {} nodes",
            t.node_count()
        );
        assert_eq!(matches(&t, &format!("{key}.z")), [1, 2, 3]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "100 matches took {:?}",
            started.elapsed()
        );
    }

    /// Every pattern of up to four words over {a, b, *, #} against every key of up to five
    /// words over {a, b}: the automaton agrees with the recursive definition on all of them.
    #[test]
    fn agrees_with_the_definition_exhaustively() {
        fn reference(pattern: &[&str], key: &[&str]) -> bool {
            match (pattern.first(), key.first()) {
                (None, None) => true,
                (Some(&"#"), _) => {
                    reference(&pattern[1..], key)
                        || (!key.is_empty() && reference(pattern, &key[1..]))
                }
                (Some(&"*"), Some(_)) => reference(&pattern[1..], &key[1..]),
                (Some(p), Some(k)) if p == k => reference(&pattern[1..], &key[1..]),
                _ => false,
            }
        }
        fn all(alphabet: &[&'static str], max: usize) -> Vec<Vec<&'static str>> {
            let mut out = vec![vec![]];
            let mut layer = vec![vec![]];
            for _ in 0..max {
                let mut next = Vec::new();
                for w in &layer {
                    for a in alphabet {
                        let mut v: Vec<&'static str> = w.clone();
                        v.push(a);
                        next.push(v);
                    }
                }
                out.extend(next.iter().cloned());
                layer = next;
            }
            out
        }
        let patterns = all(&["a", "b", "*", "#"], 4);
        let keys = all(&["a", "b"], 5);
        let mut t = TopicTrie::new();
        for (i, p) in patterns.iter().enumerate() {
            assert!(t.bind(p.join(".").as_bytes(), i as u32));
        }
        for k in &keys {
            let expected: Vec<u32> = (0..patterns.len() as u32)
                .filter(|&i| reference(&patterns[i as usize], k))
                .collect();
            assert_eq!(matches(&t, &k.join(".")), expected, "key {k:?}");
        }
        for (i, p) in patterns.iter().enumerate() {
            assert!(t.unbind(p.join(".").as_bytes(), i as u32));
        }
        assert_eq!(t.node_count(), 1);
    }
}
