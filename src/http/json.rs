//! Writing JSON straight into a connection's output, object by object, so a listing of
//! 10,000 queues never exists as one document in memory; and RabbitMQ's `columns` selection
//! (`columns=name,arguments.x-max-length`) applied while writing.
//!
//! Writers emit keys in the order they are called; RabbitMQ's objects have their keys sorted,
//! so callers write them sorted. serde_json parses request bodies and supplies `Value` for
//! free-form parts (arguments, client properties); it is never used to build a listing.

use serde_json::Value;
use std::io::Write;

/// A `columns` selection as a tree of names: `a,b.c` selects all of `a` and `c` inside `b`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    children: Vec<(String, Columns)>,
    /// Selected whole (a path ended here).
    whole: bool,
}

impl Columns {
    /// Parses the `columns` parameter. Empty names are dropped as Erlang's string:tokens
    /// does, so `columns=` selects nothing and RabbitMQ answers `[]` for each item.
    pub fn parse(param: &str) -> Columns {
        let mut root = Columns::default();
        for path in param.split(',').filter(|p| !p.is_empty()) {
            let mut node = &mut root;
            for name in path.split('.').filter(|n| !n.is_empty()) {
                let i = match node.children.iter().position(|(n, _)| n == name) {
                    Some(i) => i,
                    None => {
                        node.children.push((name.to_string(), Columns::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[i].1;
            }
            node.whole = true;
        }
        root
    }

    fn child(&self, key: &str) -> Option<&Columns> {
        self.children.iter().find(|(n, _)| n == key).map(|(_, c)| c)
    }
}

/// What of an object to write: everything, or the selected keys.
#[derive(Debug, Clone, Copy)]
pub enum Filter<'c> {
    All,
    Only(&'c Columns),
}

impl<'c> Filter<'c> {
    /// From an optional `columns` parameter.
    pub fn from(columns: Option<&'c Columns>) -> Filter<'c> {
        columns.map_or(Filter::All, Filter::Only)
    }

    /// The filter for the value under `key`, or None when the key is not selected.
    fn descend(self, key: &str) -> Option<Filter<'c>> {
        match self {
            Filter::All => Some(Filter::All),
            Filter::Only(c) => match c.child(key) {
                Some(sub) if sub.whole => Some(Filter::All),
                Some(sub) => Some(Filter::Only(sub)),
                None => None,
            },
        }
    }
}

/// A JSON string with the escapes RFC 8259 requires; other characters as UTF-8.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A float as RabbitMQ's rates look (`0.0`, `1.6`); NaN and infinities, which JSON lacks,
/// as null.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v:?}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A serde_json value, keeping only what `filter` selects of objects.
pub fn write_value(out: &mut Vec<u8>, v: &Value, filter: Filter<'_>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, Filter::All);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut o = ObjectWriter::nested(out, filter);
            for (k, v) in map {
                o.value(k, v);
            }
            o.end();
        }
    }
}

/// Writes one JSON object key by key, skipping keys the filter does not select.
pub struct ObjectWriter<'o, 'c> {
    out: &'o mut Vec<u8>,
    start: usize,
    first: bool,
    filter: Filter<'c>,
    top: bool,
}

impl<'o, 'c> ObjectWriter<'o, 'c> {
    /// An item of a listing or a single object: the level `columns` applies to. When the
    /// filter selects none of its keys RabbitMQ renders it as `[]` (an empty Erlang
    /// proplist), and so does this.
    pub fn item(out: &'o mut Vec<u8>, filter: Filter<'c>) -> Self {
        let start = out.len();
        out.push(b'{');
        ObjectWriter {
            out,
            start,
            first: true,
            filter,
            top: true,
        }
    }

    fn nested(out: &'o mut Vec<u8>, filter: Filter<'c>) -> Self {
        let mut w = ObjectWriter::item(out, filter);
        w.top = false;
        w
    }

    /// Writes `"key":` and returns the filter for the value, or None to skip it.
    fn key(&mut self, key: &str) -> Option<Filter<'c>> {
        let sub = self.filter.descend(key)?;
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
        Some(sub)
    }

    pub fn str(&mut self, key: &str, v: &str) -> &mut Self {
        if self.key(key).is_some() {
            write_str(self.out, v);
        }
        self
    }

    /// A string, or null when absent (RabbitMQ's `undefined`).
    pub fn opt_str(&mut self, key: &str, v: Option<&str>) -> &mut Self {
        if self.key(key).is_some() {
            match v {
                Some(s) => write_str(self.out, s),
                None => self.out.extend_from_slice(b"null"),
            }
        }
        self
    }

    pub fn u64(&mut self, key: &str, v: u64) -> &mut Self {
        if self.key(key).is_some() {
            let _ = write!(self.out, "{v}");
        }
        self
    }

    pub fn i64(&mut self, key: &str, v: i64) -> &mut Self {
        if self.key(key).is_some() {
            let _ = write!(self.out, "{v}");
        }
        self
    }

    pub fn f64(&mut self, key: &str, v: f64) -> &mut Self {
        if self.key(key).is_some() {
            write_f64(self.out, v);
        }
        self
    }

    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        if self.key(key).is_some() {
            self.out
                .extend_from_slice(if v { b"true" } else { b"false" });
        }
        self
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        if self.key(key).is_some() {
            self.out.extend_from_slice(b"null");
        }
        self
    }

    pub fn value(&mut self, key: &str, v: &Value) -> &mut Self {
        if let Some(sub) = self.key(key) {
            write_value(self.out, v, sub);
        }
        self
    }

    /// A value built only if the key is selected (arguments, client properties: decoding
    /// them for every item of a listing that asked for `columns=name` would be waste).
    pub fn value_with(&mut self, key: &str, v: impl FnOnce() -> Value) -> &mut Self {
        if let Some(sub) = self.key(key) {
            write_value(self.out, &v(), sub);
        }
        self
    }

    /// A nested object; `columns` paths reach into it (`arguments.x-max-length`).
    pub fn object(&mut self, key: &str, f: impl FnOnce(&mut ObjectWriter<'_, 'c>)) -> &mut Self {
        if let Some(sub) = self.key(key) {
            let mut o = ObjectWriter::nested(self.out, sub);
            f(&mut o);
            o.end();
        }
        self
    }

    /// A nested array, whose elements are written whole.
    pub fn array(&mut self, key: &str, f: impl FnOnce(&mut ArrayWriter<'_>)) -> &mut Self {
        if self.key(key).is_some() {
            let mut a = ArrayWriter::begin(self.out);
            f(&mut a);
            a.end();
        }
        self
    }

    pub fn end(self) {
        if self.first && self.top && matches!(self.filter, Filter::Only(_)) {
            self.out.truncate(self.start);
            self.out.extend_from_slice(b"[]");
        } else {
            self.out.push(b'}');
        }
    }
}

/// Writes one JSON array element by element.
pub struct ArrayWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ArrayWriter<'o> {
    pub fn begin(out: &'o mut Vec<u8>) -> Self {
        out.push(b'[');
        ArrayWriter { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.sep();
        write_str(self.out, v);
        self
    }

    pub fn value(&mut self, v: &Value) -> &mut Self {
        self.sep();
        write_value(self.out, v, Filter::All);
        self
    }

    pub fn object(&mut self, f: impl FnOnce(&mut ObjectWriter<'_, '_>)) -> &mut Self {
        self.sep();
        let mut o = ObjectWriter::nested(self.out, Filter::All);
        f(&mut o);
        o.end();
        self
    }

    pub fn end(self) {
        self.out.push(b']');
    }
}

/// RabbitMQ's error body: `{"error":"...","reason":"..."}`.
pub fn error_body(error: &str, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + error.len() + reason.len());
    let mut o = ObjectWriter::nested(&mut out, Filter::All);
    o.str("error", error).str("reason", reason);
    o.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(out: &mut Vec<u8>, filter: Filter<'_>, name: &str, max_len: Option<u64>) {
        let mut o = ObjectWriter::item(out, filter);
        o.object("arguments", |a| {
            if let Some(n) = max_len {
                a.u64("x-max-length", n);
            }
        })
        .bool("durable", false)
        .str("name", name)
        .str("vhost", "/");
        o.end();
    }

    fn render(columns: Option<&str>, max_len: Option<u64>) -> String {
        let cols = columns.map(Columns::parse);
        let mut out = Vec::new();
        queue(&mut out, Filter::from(cols.as_ref()), "work.1", max_len);
        String::from_utf8(out).unwrap()
    }

    /// Column selection gives what RabbitMQ 3.10 gave for the same selection (pagination.txt).
    #[test]
    fn columns_like_rabbitmq() {
        assert_eq!(
            render(None, Some(1)),
            r#"{"arguments":{"x-max-length":1},"durable":false,"name":"work.1","vhost":"/"}"#
        );
        assert_eq!(
            render(Some("vhost,name"), Some(1)),
            r#"{"name":"work.1","vhost":"/"}"#
        );
        assert_eq!(
            render(Some("name,arguments.x-max-length"), Some(1)),
            r#"{"arguments":{"x-max-length":1},"name":"work.1"}"#
        );
        assert_eq!(
            render(Some("name,arguments.x-max-length"), None),
            r#"{"arguments":{},"name":"work.1"}"#
        );
        assert_eq!(render(Some("nope,name"), None), r#"{"name":"work.1"}"#);
        assert_eq!(render(Some(""), None), "[]");
        assert_eq!(render(Some("nope"), None), "[]");
        assert_eq!(render(Some("name,name,"), None), r#"{"name":"work.1"}"#);
    }

    /// Strings are escaped as JSON requires and parse back to themselves.
    #[test]
    fn string_escapes_round_trip() {
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "line\nbreak\ttab\r",
            "\u{1}\u{1f}",
            "é/ü 日本",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    /// A serde_json value is written filtered, and floats keep RabbitMQ's `0.0` form.
    #[test]
    fn values_and_floats() {
        let v: Value = serde_json::json!({"b": [1, "x", null], "a": {"k": true, "j": 1.5}});
        let cols = Columns::parse("a.k");
        let mut out = Vec::new();
        write_value(&mut out, &v, Filter::Only(&cols));
        assert_eq!(out, br#"{"a":{"k":true}}"#);
        let mut out = Vec::new();
        write_f64(&mut out, 0.0);
        out.push(b' ');
        write_f64(&mut out, 1.6);
        out.push(b' ');
        write_f64(&mut out, f64::NAN);
        assert_eq!(out, b"0.0 1.6 null");
        assert_eq!(
            error_body("Object Not Found", "Not Found"),
            br#"{"error":"Object Not Found","reason":"Not Found"}"#
        );
    }
}
