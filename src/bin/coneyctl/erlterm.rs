//! Erlang terms as rabbitmqctl's Erlang formatter prints them (`io_lib:format("~p", [T])`:
//! column 1, line length 80, no depth limit), for the commands whose default output is that
//! formatter (federation_status). Only what those commands print is modelled: lists, maps
//! with atom keys, atoms and binaries of printable ASCII; a binary with anything else is
//! written as its byte list (`<<195,169>>`) on one line, where Erlang would break long ones.
//!
//! The layout follows OTP's io_lib_pretty: a term that fits on the rest of the line is
//! written flat; otherwise a list or map puts each element on its own line, indented under
//! the first, except that "atomic" elements (atoms, binaries, or a map pair of two atomic
//! terms) that still fit are packed onto the current line; a map pair that does not fit
//! breaks after ` =>` and indents its value 4 columns past the key.

/// A term of the modelled kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Atom(String),
    Binary(String),
    List(Vec<Term>),
    /// Pairs in the order to print: Erlang prints a small map's atom keys sorted.
    Map(Vec<(Term, Term)>),
}

/// Line length of `~p`.
const LINE: usize = 80;
/// How far a map value that does not fit after its key is indented past the key.
const MAP_VALUE_INDENT: usize = 4;

impl Term {
    pub fn atom(s: &str) -> Term {
        Term::Atom(s.to_string())
    }
    pub fn binary(s: &str) -> Term {
        Term::Binary(s.to_string())
    }
}

/// The term on one line.
pub fn write(t: &Term) -> String {
    match t {
        Term::Atom(a) => write_atom(a),
        Term::Binary(b) => write_binary(b),
        Term::List(items) => {
            let inner: Vec<String> = items.iter().map(write).collect();
            format!("[{}]", inner.join(","))
        }
        Term::Map(pairs) => {
            let inner: Vec<String> = pairs.iter().map(|(k, v)| write_pair(k, v)).collect();
            format!("#{{{}}}", inner.join(","))
        }
    }
}

fn write_pair(k: &Term, v: &Term) -> String {
    format!("{} => {}", write(k), write(v))
}

/// Atoms that need no quotes: a lowercase letter, then letters, digits, `_` and `@`, and
/// not a reserved word.
fn write_atom(a: &str) -> String {
    const RESERVED: &[&str] = &[
        "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
        "catch", "cond", "div", "end", "fun", "if", "let", "maybe", "not", "of", "or", "orelse",
        "receive", "rem", "try", "when", "xor",
    ];
    let plain = a.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
        && !RESERVED.contains(&a);
    if plain {
        a.to_string()
    } else {
        format!("'{}'", escape(a, '\''))
    }
}

fn printable(s: &str) -> bool {
    s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) || b"\n\r\t\x0b\x08\x0c\x1b".contains(&b))
}

fn write_binary(b: &str) -> String {
    if b.is_empty() {
        "<<>>".into()
    } else if printable(b) {
        format!("<<\"{}\">>", escape(b, '"'))
    } else {
        let bytes: Vec<String> = b.bytes().map(|x| x.to_string()).collect();
        format!("<<{}>>", bytes.join(","))
    }
}

/// Erlang's escapes inside a quoted string or atom.
fn escape(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x1b' => out.push_str("\\e"),
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn len(t: &Term) -> usize {
    write(t).chars().count()
}

fn atomic(t: &Term) -> bool {
    matches!(t, Term::Atom(_) | Term::Binary(_))
}

/// `~p` of the term, starting at column 1.
pub fn pretty(t: &Term) -> String {
    let mut out = String::new();
    pp(t, 1, 0, &mut out);
    out
}

/// Whether `width` characters fit at column `col` with `after` characters (closing
/// brackets) still to come on the line.
fn fits(width: usize, col: usize, after: usize) -> bool {
    width + col + after < LINE
}

fn newline(out: &mut String, col: usize) {
    out.push('\n');
    out.push_str(&" ".repeat(col - 1));
}

/// Prints `t` at column `col`; `after` is how many closing brackets follow it.
fn pp(t: &Term, col: usize, after: usize, out: &mut String) {
    if fits(len(t), col, after) {
        out.push_str(&write(t));
        return;
    }
    match t {
        Term::List(items) => {
            out.push('[');
            pp_elements(items, col + 1, after, out, pp, len, atomic);
            out.push(']');
        }
        Term::Map(pairs) => {
            out.push_str("#{");
            pp_elements(
                pairs,
                col + 2,
                after,
                out,
                |(k, v), c, a, o| pp_pair(k, v, c, a, o),
                |(k, v)| len(k) + 4 + len(v),
                |(k, v)| atomic(k) && atomic(v),
            );
            out.push('}');
        }
        // Atoms and binaries that do not fit are written anyway.
        _ => out.push_str(&write(t)),
    }
}

/// A map pair at column `col`: flat if it fits, else the key, ` =>`, and the value on the
/// next line indented past the key.
fn pp_pair(k: &Term, v: &Term, col: usize, after: usize, out: &mut String) {
    let flat = len(k) + 4 + len(v);
    if fits(flat, col, after) {
        out.push_str(&write_pair(k, v));
        return;
    }
    pp(k, col, after, out);
    out.push_str(" =>");
    newline(out, col + MAP_VALUE_INDENT);
    pp(v, col + MAP_VALUE_INDENT, after, out);
}

/// The elements of a list or map at column `col`, separated by commas: an element goes on
/// the current line when it and everything before it there are atomic and fit, else on a
/// new line at `col`. The last element has the container's closing bracket after it.
fn pp_elements<E>(
    items: &[E],
    col: usize,
    after: usize,
    out: &mut String,
    print: impl Fn(&E, usize, usize, &mut String),
    width: impl Fn(&E) -> usize,
    is_atomic: impl Fn(&E) -> bool,
) {
    // Where the current line is, or None after a non-atomic element (which forces the
    // next one onto a new line).
    let mut at: Option<usize> = None;
    for (i, e) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        // Closing brackets that follow this element on its line.
        let tail = if last { after + 1 } else { 0 };
        let w = width(e);
        if i > 0 {
            out.push(',');
            // io_lib_pretty keeps one more column free after a non-last element for the
            // comma that follows it.
            let room = if last { tail } else { 1 };
            match at {
                Some(c) if is_atomic(e) && fits(w + 1, c, room) => {
                    print(e, c + 1, tail, out);
                    at = Some(c + 1 + w);
                    continue;
                }
                _ => newline(out, col),
            }
        }
        if is_atomic(e) && fits(w, col, tail) {
            print(e, col, tail, out);
            at = Some(col + w);
        } else {
            print(e, col, tail, out);
            at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(connection: &str) -> Term {
        let b = Term::binary;
        let a = Term::atom;
        Term::Map(vec![
            (a("error"), b("")),
            (a("exchange"), b("tmp-fed")),
            (a("id"), b("88a9dc50")),
            (a("last_changed"), b("2026-12-04 13:57:30")),
            (a("local_connection"), b(connection)),
            (a("queue"), b("")),
            (a("status"), a("running")),
            (a("type"), a("exchange")),
            (a("upstream"), b("u1")),
            (a("upstream_exchange"), b("tmp-fed")),
            (a("upstream_queue"), b("")),
            (a("uri"), b("amqp://localhost:6150")),
            (a("vhost"), b("/")),
        ])
    }

    /// What rabbitmqctl 3.10 printed for one federation link (recorded from a node).
    #[test]
    fn federation_link_as_rabbitmqctl_prints_it() {
        let t = Term::List(vec![link(
            "<coney_rmq_6150_11326@localhost.1796392604.1149.0>",
        )]);
        assert_eq!(
            pretty(&t),
            "[#{error => <<>>,exchange => <<\"tmp-fed\">>,id => <<\"88a9dc50\">>,\n   \
             last_changed => <<\"2026-12-04 13:57:30\">>,\n   \
             local_connection =>\n       \
             <<\"<coney_rmq_6150_11326@localhost.1796392604.1149.0>\">>,\n   \
             queue => <<>>,status => running,type => exchange,upstream => <<\"u1\">>,\n   \
             upstream_exchange => <<\"tmp-fed\">>,upstream_queue => <<>>,\n   \
             uri => <<\"amqp://localhost:6150\">>,vhost => <<\"/\">>}]"
        );
    }

    /// Short terms stay on one line; two maps go on lines of their own.
    #[test]
    fn flat_and_several() {
        assert_eq!(pretty(&Term::List(vec![])), "[]");
        let small = Term::Map(vec![(Term::atom("a"), Term::binary("x"))]);
        assert_eq!(pretty(&Term::List(vec![small])), "[#{a => <<\"x\">>}]");
        let t = Term::List(vec![link("c1"), link("c2")]);
        let text = pretty(&t);
        assert!(text.contains("}},\n #{error => <<>>") || text.contains("},\n #{error"));
        assert!(text.lines().all(|l| l.chars().count() < 80), "{text}");
    }

    #[test]
    fn atoms_and_binaries() {
        assert_eq!(write(&Term::atom("running")), "running");
        assert_eq!(write(&Term::atom("Up")), "'Up'");
        assert_eq!(write(&Term::atom("end")), "'end'");
        assert_eq!(write(&Term::binary("a\"b\\")), "<<\"a\\\"b\\\\\">>");
        assert_eq!(write(&Term::binary("é")), "<<195,169>>");
    }
}
