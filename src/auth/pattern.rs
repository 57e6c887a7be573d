//! Permission patterns: the configure/write/read regular expressions of a user in a vhost and
//! of topic permissions, matched as RabbitMQ matches them: `re:run(Name, Pattern)` unanchored
//! on the name's bytes (PCRE without the unicode option), with "" meaning "^$" (nothing).
//!
//! Patterns run on the `regex` crate, whose matching is linear in the subject whatever the
//! pattern, so a hostile pattern cannot stall the loop; its compiled size is bounded
//! (`limits::PERMISSION_REGEX_COMPILED_MAX_BYTES`). Differences from PCRE, each checked against
//! RabbitMQ 3.10: a `{` that does not start a quantifier is a literal (as in PCRE, so
//! "{client_id}" works); PCRE's `$` also matches before a final newline and ours does not, so
//! a subject ending in "\n" can be refused where RabbitMQ allows it, never the reverse;
//! lookaround and backreferences do not compile and are refused when the pattern is set.

use crate::limits::{
    PERMISSION_PATTERN_MAX_BYTES, PERMISSION_REGEX_COMPILED_MAX_BYTES,
    PERMISSION_REGEX_DFA_CACHE_MAX_BYTES, PERMISSION_REGEX_NEST_MAX,
};
use regex::bytes::{Regex, RegexBuilder};
use std::fmt;
use std::sync::OnceLock;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// Longer than `PERMISSION_PATTERN_MAX_BYTES` (after variable expansion).
    TooLong { bytes: usize },
    /// Not a regular expression we can run, or one that compiles beyond the size bound.
    Invalid { pattern: String, reason: String },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::TooLong { bytes } => write!(
                f,
                "permission pattern of {bytes} bytes is longer than {PERMISSION_PATTERN_MAX_BYTES}"
            ),
            PatternError::Invalid { pattern, reason } => {
                write!(f, "invalid permission pattern '{pattern}': {reason}")
            }
        }
    }
}

/// A compiled permission pattern that remembers its source text (for export and listing).
#[derive(Clone)]
pub struct PermissionPattern {
    source: String,
    matcher: Matcher,
}

/// How a pattern is run. The two patterns every broker starts with (the default user's ".*"
/// and a denied permission's "") need no regex: compiling one at start-up pulls tens of
/// pages of the regex compiler's code into the idle broker's RSS.
#[derive(Clone)]
enum Matcher {
    /// ".*": an unanchored `.*` matches the empty string at the start of every subject.
    Everything,
    /// "" read as "^$": only the empty name.
    EmptyOnly,
    Regex(Regex),
}

impl fmt::Debug for PermissionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PermissionPattern({:?})", self.source)
    }
}

impl PartialEq for PermissionPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for PermissionPattern {}

impl PermissionPattern {
    /// Compiles `source` as RabbitMQ would run it.
    pub fn new(source: &str) -> Result<Self, PatternError> {
        let matcher = match source {
            ".*" => Matcher::Everything,
            "" => Matcher::EmptyOnly,
            _ => Matcher::Regex(compile(source)?),
        };
        Ok(PermissionPattern {
            source: source.to_owned(),
            matcher,
        })
    }

    /// A pattern matching every name (".*"), compiled once per process (a clone shares it).
    pub fn everything() -> Self {
        static EVERYTHING: OnceLock<PermissionPattern> = OnceLock::new();
        EVERYTHING
            .get_or_init(|| Self::new(".*").expect("'.*' compiles"))
            .clone()
    }

    /// A pattern matching no name but the empty one ("", as RabbitMQ reads it: "^$"),
    /// compiled once per process.
    pub fn nothing() -> Self {
        static NOTHING: OnceLock<PermissionPattern> = OnceLock::new();
        NOTHING
            .get_or_init(|| Self::new("").expect("'' compiles"))
            .clone()
    }

    /// The pattern as it was set; "" stays "".
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the pattern matches anywhere in `subject` (RabbitMQ does not anchor).
    pub fn is_match(&self, subject: &[u8]) -> bool {
        match &self.matcher {
            Matcher::Everything => true,
            Matcher::EmptyOnly => subject.is_empty(),
            Matcher::Regex(r) => r.is_match(subject),
        }
    }
}

/// Compiles a pattern: "" is "^$"; bytes, not Unicode, as PCRE runs on Erlang binaries.
fn compile(source: &str) -> Result<Regex, PatternError> {
    if source.len() > PERMISSION_PATTERN_MAX_BYTES {
        return Err(PatternError::TooLong {
            bytes: source.len(),
        });
    }
    let translated = if source.is_empty() {
        "^$".to_owned()
    } else {
        translate(source).map_err(|reason| PatternError::Invalid {
            pattern: source.to_owned(),
            reason: reason.to_owned(),
        })?
    };
    RegexBuilder::new(&translated)
        .unicode(false)
        .size_limit(PERMISSION_REGEX_COMPILED_MAX_BYTES)
        .dfa_size_limit(PERMISSION_REGEX_DFA_CACHE_MAX_BYTES)
        .nest_limit(PERMISSION_REGEX_NEST_MAX)
        .build()
        .map_err(|e| PatternError::Invalid {
            pattern: source.to_owned(),
            reason: e.to_string().lines().last().unwrap_or("").trim().to_owned(),
        })
}

/// Rewrites PCRE syntax into the regex crate's where both can mean the same, and refuses it
/// where they cannot:
/// - a `{` that does not start `{n}`, `{n,}` or `{n,m}` is a literal in PCRE 8: escaped;
/// - a quantifier on a quantifier (PCRE's possessive `a*+`, or `a**` which PCRE refuses) and
///   a quantifier after a non-ASCII character (PCRE repeats its last byte) are refused;
/// - in a character class, `[` (other than `[:name:]`), `&&`, `--`, `~~` are literals in PCRE
///   but nesting and set operations in the regex crate, and a non-ASCII character is a set of
///   bytes in PCRE: refused.
fn translate(source: &str) -> Result<String, &'static str> {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + 8);
    let mut chars = source.char_indices().peekable();
    // Set after a quantifier; a following `?` (lazy) is allowed once.
    let mut after_quantifier = false;
    let mut after_lazy = false;
    let mut after_non_ascii = false;
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            out.push(c);
            if let Some((_, next)) = chars.next() {
                out.push(next);
            }
            (after_quantifier, after_lazy, after_non_ascii) = (false, false, false);
            continue;
        }
        if c == '[' {
            let end = class_end(bytes, i)?;
            out.push_str(&source[i..end]);
            while chars.peek().is_some_and(|&(j, _)| j < end) {
                chars.next();
            }
            (after_quantifier, after_lazy, after_non_ascii) = (false, false, false);
            continue;
        }
        let quantifier =
            matches!(c, '*' | '+' | '?') || (c == '{' && starts_quantifier(&bytes[i..]));
        if quantifier {
            if after_non_ascii {
                return Err("a quantifier after a non-ASCII character repeats one byte in PCRE");
            }
            if after_quantifier {
                if c != '?' || after_lazy {
                    return Err(
                        "a quantifier on a quantifier (possessive or repeated) is not supported",
                    );
                }
                after_lazy = true;
            }
            after_quantifier = true;
        } else {
            (after_quantifier, after_lazy) = (false, false);
        }
        after_non_ascii = !c.is_ascii();
        match c {
            '{' if quantifier => {
                // Copy the whole `{n,m}` so its digits do not end the quantifier state.
                out.push('{');
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '}' {
                        break;
                    }
                }
            }
            '{' => out.push_str("\\{"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// The end (exclusive) of the PCRE character class starting at `start` (a `[`), refusing
/// contents the regex crate would read differently.
fn class_end(b: &[u8], start: usize) -> Result<usize, &'static str> {
    let mut i = start + 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    // A `]` first in the class is a literal in both.
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    while let Some(&c) = b.get(i) {
        match c {
            b']' => return Ok(i + 1),
            b'\\' => i += 2,
            b'[' if b.get(i + 1) == Some(&b':') => {
                let close = b[i + 2..].windows(2).position(|w| w == b":]");
                i = close.ok_or("'[' inside a character class is not supported")? + i + 4;
            }
            b'[' => return Err("'[' inside a character class is not supported"),
            b'&' | b'-' | b'~' if b.get(i + 1) == Some(&c) => {
                return Err("'&&', '--' and '~~' inside a character class are not supported")
            }
            c if !c.is_ascii() => {
                return Err("non-ASCII characters in a character class are not supported")
            }
            _ => i += 1,
        }
    }
    Err("unterminated character class")
}

/// True when `s` (starting at a `{`) is `{digits}`, `{digits,}` or `{digits,digits}`.
fn starts_quantifier(s: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let min = digits(&s[1..]);
    if min == 0 {
        return false;
    }
    let rest = &s[1 + min..];
    match rest.first() {
        Some(b'}') => true,
        Some(b',') => {
            let max = digits(&rest[1..]);
            rest.get(1 + max) == Some(&b'}')
        }
        _ => false,
    }
}

/// Topic permission patterns may name `{username}` and `{vhost}`, replaced by the values
/// verbatim (not escaped), username first, as RabbitMQ's `expand_topic_permission` does for
/// AMQP 0-9-1 connections; `{client_id}` is expanded only for MQTT, so here it stays literal.
pub fn expand_topic_variables(source: &str, username: &str, vhost: &str) -> String {
    source
        .replace("{username}", username)
        .replace("{vhost}", vhost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, subject: &str) -> bool {
        PermissionPattern::new(pattern)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_match(subject.as_bytes())
    }

    /// ".*" and "", run without the regex engine, answer as their compiled regexes do,
    /// newlines and non-UTF-8 bytes included.
    #[test]
    fn shortcuts_agree_with_the_regex() {
        let subjects: [&[u8]; 6] = [b"", b"q", b"\n", b"a\nb", b"\n\n", &[0xff, 0x00, 0x80]];
        for (source, translated) in [(".*", ".*"), ("", "^$")] {
            let p = PermissionPattern::new(source).unwrap();
            assert!(!matches!(p.matcher, Matcher::Regex(_)), "{source:?}");
            let re = RegexBuilder::new(translated)
                .unicode(false)
                .build()
                .unwrap();
            for s in subjects {
                assert_eq!(p.is_match(s), re.is_match(s), "{source:?} on {s:?}");
            }
        }
    }

    /// The corner cases checked on RabbitMQ 3.10 with pika: "" allows nothing (not even ""
    /// names mapped to amq.default), ".*" everything, patterns are unanchored, and
    /// "^amq\.gen.*" allows server-named queues only.
    #[test]
    fn anchoring_matches_rabbitmq() {
        assert!(!matches("", "q"));
        assert!(!matches("", "amq.default"));
        assert!(matches("", ""));
        assert!(matches(".*", ""));
        assert!(matches(".*", "anything at all"));
        assert!(matches("q", "xqx"), "unanchored: 'q' allows 'xqx'");
        assert!(!matches("q", "abc"));
        assert!(matches("^amq\\.gen.*", "amq.gen-IUNVIp2XcrhbksV3Sjn3Jg"));
        assert!(!matches("^amq\\.gen.*", "q"));
        assert!(!matches("^amq\\.gen.*", "amqXgen"));
        assert!(matches("^(app\\.|events$)", "events"));
        assert!(!matches("^(app\\.|events$)", "events2"));
        assert!(matches("^amq\\.default$", "amq.default"));
    }

    /// Names are bytes and classes are ASCII, as PCRE on an Erlang binary: "\w" does not
    /// match "é" (RabbitMQ refused queue 'é' under "^\w+$"), a literal "é" matches its bytes.
    #[test]
    fn classes_are_ascii_and_literals_are_bytes() {
        assert!(!matches("^\\w+$", "é"));
        assert!(matches("^\\w+$", "abc_1"));
        assert!(matches("^é", "é1"));
        assert!(matches("^.{2}$", "é"), "'.' is one byte: é is two");
        let p = PermissionPattern::new(".*").unwrap();
        assert!(p.is_match(&[0xff, 0x00, 0x80]));
    }

    /// A "{" that is not a quantifier is literal, as PCRE 8 reads it (checked on RabbitMQ with
    /// the topic pattern "a{2}|b{,}|c{x": "aa", "b{,}" and "c{x" allowed, "b" refused).
    #[test]
    fn braces_follow_pcre() {
        let p = "a{2}|b{,}|c{x";
        assert!(matches(p, "aa"));
        assert!(matches(p, "b{,}"));
        assert!(matches(p, "c{x"));
        assert!(!matches(p, "b"));
        assert!(!matches(p, "a"));
        assert!(matches("^{client_id}$", "{client_id}"));
        assert!(matches("^x{1,3}$", "xxx"));
        assert!(!matches("^x{1,3}$", "xxxx"));
        assert!(matches("^x{2,}$", "xxxxx"));
        assert!(matches("^\\{a}$", "{a}"));
        assert!(matches("[{]", "{"));
        assert!(matches("^a}$", "a}"));
    }

    /// PCRE's "$" also matches before one final newline (RabbitMQ allowed key "a\n" under
    /// "^a$" but refused "a\n\n"); ours matches only at the end: stricter, never looser.
    #[test]
    fn dollar_is_end_only() {
        assert!(matches("^a$", "a"));
        assert!(!matches("^a$", "a\n"));
        assert!(!matches("^a$", "a\n\n"));
    }

    /// Constructs the regex crate cannot run in linear time, oversized patterns and patterns
    /// that compile beyond the bound are refused when set, never at match time.
    #[test]
    fn unrunnable_and_oversized_patterns_are_refused() {
        for bad in ["(?=a)", "(a)\\1", "a(?!b)", "(", "\\Qa\\E", "[a", "a\\Z"] {
            assert!(
                matches!(
                    PermissionPattern::new(bad),
                    Err(PatternError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        let long = "a".repeat(PERMISSION_PATTERN_MAX_BYTES + 1);
        assert_eq!(
            PermissionPattern::new(&long),
            Err(PatternError::TooLong { bytes: long.len() })
        );
        // 15 bytes of pattern, a compiled program far beyond the bound.
        assert!(matches!(
            PermissionPattern::new("(a{1000}){1000}"),
            Err(PatternError::Invalid { .. })
        ));
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(PermissionPattern::new(&deep).is_err());
    }

    /// PCRE constructs the regex crate would read differently are refused rather than run
    /// with another meaning; their neighbours that mean the same in both are accepted.
    #[test]
    fn diverging_syntax_is_refused() {
        for bad in [
            "a**", "a*+", "a++", "a?+", "a{2}+", "a*{2}", "é+", "xé{2}", "[a[b]c]", "[a&&b]",
            "[a--b]", "[a~~b]", "[é]",
        ] {
            assert!(
                matches!(
                    PermissionPattern::new(bad),
                    Err(PatternError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches("^[[:alpha:]]+$", "abc"));
        assert!(!matches("^[[:alpha:]]+$", "ab1"));
        assert!(matches("^a*?b$", "aab"));
        assert!(matches("^a??b$", "ab"));
        assert!(matches("^[]a]+$", "]a]"));
        assert!(matches("^[^]a]$", "b"));
        assert!(matches("^[a-c-]+$", "a-c"));
        assert!(matches("^(?i)ABC$", "abc"));
        assert!(matches("^é$", "é"));
        assert!(matches("^(é)+$", "éé"));
        assert!(matches("^[\\]]$", "]"));
    }

    /// A realistic long pattern (an alternation of 500 queue names) fits the bounds.
    #[test]
    fn long_alternations_fit() {
        let names: Vec<String> = (0..500).map(|i| format!("service-{i:04}\\.q")).collect();
        let p = format!("^({})$", names.join("|"));
        assert!(p.len() <= PERMISSION_PATTERN_MAX_BYTES);
        let p = PermissionPattern::new(&p).unwrap();
        assert!(p.is_match(b"service-0499.q"));
        assert!(!p.is_match(b"service-0500.q"));
    }

    /// The worst subject for a hostile pattern is matched in linear time: a 255-byte name
    /// (the longest AMQP short string) against nested alternations finishes at once.
    #[test]
    fn hostile_patterns_match_in_linear_time() {
        let p = PermissionPattern::new("^(a|a?)+$").unwrap();
        let subject = vec![b'a'; 255];
        let mut bad = subject.clone();
        bad.push(b'b');
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(p.is_match(&subject));
            assert!(!p.is_match(&bad));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    /// Variables expand username first, verbatim, and {client_id} stays literal for AMQP.
    #[test]
    fn topic_variables_expand_as_rabbitmq() {
        assert_eq!(
            expand_topic_variables("^{username}\\.{vhost}\\.{client_id}", "u_t", "/"),
            "^u_t\\./\\.{client_id}"
        );
        assert_eq!(expand_topic_variables("{username}", "a{vhost}", "v"), "av");
        assert_eq!(expand_topic_variables("^{vhost}-r$", "u", "/"), "^/-r$");
    }
}
