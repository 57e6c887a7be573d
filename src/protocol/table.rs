//! Field tables and arrays (AMQP 0-9-1 §4.2.5.5, with RabbitMQ's type letters from its errata):
//! a borrowed, validated view with a lazy iterator, and a writer that builds tables in place.
//!
//! Tables are validated once when their frame is decoded; iterating afterwards cannot fail.

use super::wire::{Reader, WireError, Writer};
use crate::limits::TABLE_DEPTH_MAX;

/// A field table as raw bytes (without its 32-bit length prefix), already validated.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldTable<'a> {
    raw: &'a [u8],
}

/// One value of a table or array, borrowing its strings and nested containers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    LongStr(&'a [u8]),
    /// 's' in the 0-9-1 spec grammar but RabbitMQ reads 's' as a signed short; a short string
    /// type does not exist on the wire in practice, so there is no variant for it.
    Array(FieldArray<'a>),
    Timestamp(u64),
    Table(FieldTable<'a>),
    Void,
    Bytes(&'a [u8]),
}

impl FieldValue<'_> {
    /// RabbitMQ's name for the value's type, as its error texts show it
    /// (`{unacceptable_type,signedint}`).
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal { .. } => "decimal",
            FieldValue::LongStr(_) => "longstr",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
            FieldValue::Bytes(_) => "binary",
        }
    }

    /// The value of an integer type (RabbitMQ's integer argument types), else None.
    pub fn as_integer(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) => v,
            _ => return None,
        })
    }
}

/// A field array as raw bytes (without its length prefix), already validated.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldArray<'a> {
    raw: &'a [u8],
}

impl<'a> FieldTable<'a> {
    /// An empty table.
    pub const EMPTY: FieldTable<'static> = FieldTable { raw: &[] };

    pub(super) fn from_validated(raw: &'a [u8]) -> Self {
        FieldTable { raw }
    }

    /// Validates `raw` (table contents without the length prefix) and wraps it.
    pub fn parse(raw: &'a [u8]) -> Result<Self, WireError> {
        validate_table(raw, 0)?;
        Ok(FieldTable { raw })
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn iter(&self) -> TableIter<'a> {
        TableIter {
            r: Reader::new(self.raw),
        }
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &[u8]) -> Option<FieldValue<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for FieldTable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (String::from_utf8_lossy(k), v)))
            .finish()
    }
}

impl<'a> FieldArray<'a> {
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            r: Reader::new(self.raw),
        }
    }
}

impl std::fmt::Debug for FieldArray<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterates (key, value) pairs of a validated table.
pub struct TableIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for TableIter<'a> {
    type Item = (&'a [u8], FieldValue<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        // Validated at construction, so errors cannot occur; stop rather than panic if they do.
        let key = self.r.shortstr().ok()?;
        let value = read_value(&mut self.r).ok()?;
        Some((key, value))
    }
}

/// Iterates the values of a validated array.
pub struct ArrayIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = FieldValue<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        read_value(&mut self.r).ok()
    }
}

/// Reads one type-tagged value; nested containers are returned unvalidated (callers validate).
fn read_value<'a>(r: &mut Reader<'a>) -> Result<FieldValue<'a>, WireError> {
    let tag = r.u8()?;
    Ok(match tag {
        b't' => FieldValue::Bool(r.u8()? != 0),
        b'b' => FieldValue::I8(r.u8()? as i8),
        b'B' => FieldValue::U8(r.u8()?),
        b's' => FieldValue::I16(r.u16()? as i16),
        b'u' => FieldValue::U16(r.u16()?),
        b'I' => FieldValue::I32(r.u32()? as i32),
        b'i' => FieldValue::U32(r.u32()?),
        b'l' | b'L' => FieldValue::I64(r.u64()? as i64),
        b'f' => FieldValue::F32(f32::from_bits(r.u32()?)),
        b'd' => FieldValue::F64(f64::from_bits(r.u64()?)),
        b'D' => FieldValue::Decimal {
            scale: r.u8()?,
            value: r.u32()?,
        },
        b'S' => FieldValue::LongStr(r.longstr()?),
        b'A' => FieldValue::Array(FieldArray { raw: r.longstr()? }),
        b'T' => FieldValue::Timestamp(r.u64()?),
        b'F' => FieldValue::Table(FieldTable { raw: r.longstr()? }),
        b'V' => FieldValue::Void,
        b'x' => FieldValue::Bytes(r.longstr()?),
        _ => return Err(WireError::BadTable),
    })
}

fn map_truncated(e: WireError) -> WireError {
    match e {
        WireError::Truncated => WireError::BadTable,
        other => other,
    }
}

fn validate_nested(v: FieldValue<'_>, depth: usize) -> Result<(), WireError> {
    match v {
        FieldValue::Table(t) => validate_table(t.raw, depth + 1),
        FieldValue::Array(a) => validate_array(a.raw, depth + 1),
        _ => Ok(()),
    }
}

/// Checks that `raw` is a well-formed table nested at most `TABLE_DEPTH_MAX` deep.
pub fn validate_table(raw: &[u8], depth: usize) -> Result<(), WireError> {
    if depth > TABLE_DEPTH_MAX {
        return Err(WireError::BadTable);
    }
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        r.shortstr().map_err(map_truncated)?;
        let v = read_value(&mut r).map_err(map_truncated)?;
        validate_nested(v, depth)?;
    }
    Ok(())
}

fn validate_array(raw: &[u8], depth: usize) -> Result<(), WireError> {
    if depth > TABLE_DEPTH_MAX {
        return Err(WireError::BadTable);
    }
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        let v = read_value(&mut r).map_err(map_truncated)?;
        validate_nested(v, depth)?;
    }
    Ok(())
}

/// Builds a table's contents in place: `begin`, entries, `finish` patches the length prefix.
pub struct TableWriter<'w, 'b> {
    w: &'w mut Writer<'b>,
    start: usize,
}

impl<'w, 'b> TableWriter<'w, 'b> {
    /// Reserves the 32-bit length prefix; entries follow.
    pub fn begin(w: &'w mut Writer<'b>) -> Self {
        let start = w.buf.len();
        w.u32(0);
        TableWriter { w, start }
    }

    fn key(&mut self, k: &str, tag: u8) {
        self.w.shortstr(k.as_bytes());
        self.w.u8(tag);
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k, b't');
        self.w.u8(v as u8);
        self
    }
    pub fn longstr(&mut self, k: &str, v: &[u8]) -> &mut Self {
        self.key(k, b'S');
        self.w.longstr(v);
        self
    }
    /// A nested table written by `f`.
    pub fn table(&mut self, k: &str, f: impl FnOnce(&mut TableWriter<'_, 'b>)) -> &mut Self {
        self.w.shortstr(k.as_bytes());
        self.w.u8(b'F');
        let mut inner = TableWriter::begin(self.w);
        f(&mut inner);
        inner.finish();
        self
    }

    pub fn i32(&mut self, k: &str, v: i32) -> &mut Self {
        self.key(k, b'I');
        self.w.u32(v as u32);
        self
    }
    pub fn i64(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k, b'l');
        self.w.u64(v as u64);
        self
    }
    pub fn timestamp(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k, b'T');
        self.w.u64(v);
        self
    }
    /// An entry with any key and value, e.g. one copied from another table.
    pub fn entry(&mut self, k: &[u8], v: FieldValue<'_>) -> &mut Self {
        self.w.shortstr(k);
        write_value(self.w, v);
        self
    }
    /// A nested array written by `f`.
    pub fn array(&mut self, k: &str, f: impl FnOnce(&mut ArrayWriter<'_, 'b>)) -> &mut Self {
        self.w.shortstr(k.as_bytes());
        self.w.u8(b'A');
        let mut inner = ArrayWriter::begin(self.w);
        f(&mut inner);
        inner.finish();
        self
    }

    /// Writes the length prefix of this table.
    pub fn finish(self) {
        let len = (self.w.buf.len() - self.start - 4) as u32;
        self.w.buf[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Builds an array's contents in place, as `TableWriter` builds a table.
pub struct ArrayWriter<'w, 'b> {
    w: &'w mut Writer<'b>,
    start: usize,
}

impl<'w, 'b> ArrayWriter<'w, 'b> {
    /// Reserves the 32-bit length prefix; values follow.
    pub fn begin(w: &'w mut Writer<'b>) -> Self {
        let start = w.buf.len();
        w.u32(0);
        ArrayWriter { w, start }
    }
    pub fn longstr(&mut self, v: &[u8]) -> &mut Self {
        self.w.u8(b'S');
        self.w.longstr(v);
        self
    }
    /// Any value, e.g. one copied from another array.
    pub fn value(&mut self, v: FieldValue<'_>) -> &mut Self {
        write_value(self.w, v);
        self
    }
    /// A nested table written by `f`.
    pub fn table(&mut self, f: impl FnOnce(&mut TableWriter<'_, 'b>)) -> &mut Self {
        self.w.u8(b'F');
        let mut inner = TableWriter::begin(self.w);
        f(&mut inner);
        inner.finish();
        self
    }
    /// Writes the length prefix of this array.
    pub fn finish(self) {
        let len = (self.w.buf.len() - self.start - 4) as u32;
        self.w.buf[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Writes a value with its type octet (the inverse of `read_value`; 'L' is written as 'l').
pub fn write_value(w: &mut Writer<'_>, v: FieldValue<'_>) {
    match v {
        FieldValue::Bool(b) => {
            w.u8(b't');
            w.u8(b as u8)
        }
        FieldValue::I8(x) => {
            w.u8(b'b');
            w.u8(x as u8)
        }
        FieldValue::U8(x) => {
            w.u8(b'B');
            w.u8(x)
        }
        FieldValue::I16(x) => {
            w.u8(b's');
            w.u16(x as u16)
        }
        FieldValue::U16(x) => {
            w.u8(b'u');
            w.u16(x)
        }
        FieldValue::I32(x) => {
            w.u8(b'I');
            w.u32(x as u32)
        }
        FieldValue::U32(x) => {
            w.u8(b'i');
            w.u32(x)
        }
        FieldValue::I64(x) => {
            w.u8(b'l');
            w.u64(x as u64)
        }
        FieldValue::F32(x) => {
            w.u8(b'f');
            w.u32(x.to_bits())
        }
        FieldValue::F64(x) => {
            w.u8(b'd');
            w.u64(x.to_bits())
        }
        FieldValue::Decimal { scale, value } => {
            w.u8(b'D');
            w.u8(scale);
            w.u32(value)
        }
        FieldValue::LongStr(s) => {
            w.u8(b'S');
            w.longstr(s)
        }
        FieldValue::Array(a) => {
            w.u8(b'A');
            w.longstr(a.raw())
        }
        FieldValue::Timestamp(t) => {
            w.u8(b'T');
            w.u64(t)
        }
        FieldValue::Table(t) => {
            w.u8(b'F');
            w.longstr(t.raw())
        }
        FieldValue::Void => w.u8(b'V'),
        FieldValue::Bytes(b) => {
            w.u8(b'x');
            w.longstr(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table holding one value of every type RabbitMQ uses, written by hand.
    fn every_type() -> Vec<u8> {
        let mut t = Vec::new();
        let mut entry = |k: &str, tag: u8, body: &[u8]| {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(tag);
            t.extend_from_slice(body);
        };
        entry("bool", b't', &[1]);
        entry("i8", b'b', &[0xff]);
        entry("u8", b'B', &[0xff]);
        entry("i16", b's', &[0xff, 0xfe]);
        entry("u16", b'u', &[0xff, 0xfe]);
        entry("i32", b'I', &[0xff, 0xff, 0xff, 0xfd]);
        entry("u32", b'i', &[0xff, 0xff, 0xff, 0xfd]);
        entry("i64", b'l', &[0xff; 8]);
        entry("f32", b'f', &1.5f32.to_bits().to_be_bytes());
        entry("f64", b'd', &2.25f64.to_bits().to_be_bytes());
        entry("dec", b'D', &[2, 0, 0, 1, 0]);
        entry("str", b'S', b"\0\0\0\x03abc");
        entry("arr", b'A', b"\0\0\0\x05I\0\0\0\x07");
        entry("ts", b'T', &[0, 0, 0, 0, 0x5f, 0, 0, 0]);
        entry("tbl", b'F', b"\0\0\0\x04\x01kt\x01");
        entry("void", b'V', &[]);
        entry("bytes", b'x', b"\0\0\0\x02\x00\xff");
        t
    }

    #[test]
    fn every_value_type_decodes() {
        let raw = every_type();
        let t = FieldTable::parse(&raw);
        assert!(t.is_ok(), "{t:?}");
        let t = t.unwrap();
        assert_eq!(t.get(b"bool"), Some(FieldValue::Bool(true)));
        assert_eq!(t.get(b"i8"), Some(FieldValue::I8(-1)));
        assert_eq!(t.get(b"u8"), Some(FieldValue::U8(255)));
        assert_eq!(t.get(b"i16"), Some(FieldValue::I16(-2)));
        assert_eq!(t.get(b"u16"), Some(FieldValue::U16(0xfffe)));
        assert_eq!(t.get(b"i32"), Some(FieldValue::I32(-3)));
        assert_eq!(t.get(b"u32"), Some(FieldValue::U32(0xffff_fffd)));
        assert_eq!(t.get(b"i64"), Some(FieldValue::I64(-1)));
        assert_eq!(t.get(b"f32"), Some(FieldValue::F32(1.5)));
        assert_eq!(t.get(b"f64"), Some(FieldValue::F64(2.25)));
        assert_eq!(
            t.get(b"dec"),
            Some(FieldValue::Decimal {
                scale: 2,
                value: 256
            })
        );
        assert_eq!(t.get(b"str"), Some(FieldValue::LongStr(b"abc")));
        assert_eq!(t.get(b"ts"), Some(FieldValue::Timestamp(0x5f00_0000)));
        assert_eq!(t.get(b"void"), Some(FieldValue::Void));
        assert_eq!(t.get(b"bytes"), Some(FieldValue::Bytes(&[0, 0xff])));
        match t.get(b"arr") {
            Some(FieldValue::Array(a)) => {
                assert_eq!(a.iter().collect::<Vec<_>>(), vec![FieldValue::I32(7)])
            }
            other => panic!("array: {other:?}"),
        }
        match t.get(b"tbl") {
            Some(FieldValue::Table(n)) => assert_eq!(n.get(b"k"), Some(FieldValue::Bool(true))),
            other => panic!("table: {other:?}"),
        }
        assert_eq!(t.iter().count(), 17);
    }

    #[test]
    fn every_truncation_of_a_table_is_rejected() {
        let raw = every_type();
        for cut in 1..raw.len() {
            // A cut that lands exactly on an entry boundary is a valid shorter table.
            let r = FieldTable::parse(&raw[..cut]);
            if let Ok(t) = r {
                assert!(t.iter().count() < 17);
            }
        }
        // Cutting inside the last entry is always an error.
        assert_eq!(
            FieldTable::parse(&raw[..raw.len() - 1]),
            Err(WireError::BadTable)
        );
    }

    #[test]
    fn unknown_type_and_deep_nesting_are_rejected() {
        assert_eq!(FieldTable::parse(b"\x01kZ"), Err(WireError::BadTable));
        // Build TABLE_DEPTH_MAX + 2 nested tables.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..TABLE_DEPTH_MAX + 2 {
            let mut outer = vec![1, b'k', b'F'];
            outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        assert_eq!(FieldTable::parse(&inner), Err(WireError::BadTable));
    }

    #[test]
    fn every_value_written_back_reads_the_same() {
        let raw = every_type();
        let t = FieldTable::parse(&raw).expect("table");
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        let mut out = TableWriter::begin(&mut w);
        for (k, val) in t.iter() {
            out.entry(k, val);
        }
        out.finish();
        assert_eq!(&v[4..], &raw[..]);
    }

    #[test]
    fn writer_builds_nested_tables_that_parse_back() {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        let mut t = TableWriter::begin(&mut w);
        t.longstr("product", b"coney").bool("flag", true);
        t.table("caps", |c| {
            c.bool("publisher_confirms", true);
        });
        t.finish();
        let mut r = Reader::new(&v);
        let table = r.table().expect("valid table");
        assert_eq!(table.get(b"product"), Some(FieldValue::LongStr(b"coney")));
        assert_eq!(table.get(b"flag"), Some(FieldValue::Bool(true)));
        match table.get(b"caps") {
            Some(FieldValue::Table(c)) => {
                assert_eq!(c.get(b"publisher_confirms"), Some(FieldValue::Bool(true)))
            }
            other => panic!("{other:?}"),
        }
    }
}
