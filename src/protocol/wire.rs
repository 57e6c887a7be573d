//! Primitive AMQP types on the wire: a bounds-checked reader over a borrowed payload and a
//! writer that appends to a `Vec<u8>`. The only place that turns integers and strings into bytes.
//!
//! A `Reader` works on one complete frame payload, so running out of bytes is malformed input
//! (`WireError::Truncated`), never "incomplete": frame completeness is decided in `frame.rs`.

use super::table::{validate_table, FieldTable};

/// Why a frame payload could not be decoded. Mapped to the wire by `session::error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// A field ran past the end of the payload.
    Truncated,
    /// A (class, method) pair the spec does not define.
    UnknownMethod { class_id: u16, method_id: u16 },
    /// A field table with an unknown value type, bad lengths, or nesting beyond the limit.
    BadTable,
    /// A content header whose class, flags or property list is not valid.
    BadHeader,
}

/// Cursor over one frame payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A short string: one length octet, then up to 255 bytes.
    pub fn shortstr(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u8()? as usize;
        self.bytes(n)
    }

    /// A long string: a 32-bit length, then that many bytes.
    pub fn longstr(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    /// A field table, validated once here so later iteration cannot fail.
    pub fn table(&mut self) -> Result<FieldTable<'a>, WireError> {
        let raw = self.longstr()?;
        validate_table(raw, 0)?;
        Ok(FieldTable::from_validated(raw))
    }
}

/// Appends primitives to a byte vector. Encoding cannot fail: callers pass values that fit
/// (shortstr longer than 255 bytes is truncated, which only reply texts can reach).
pub struct Writer<'a> {
    pub buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn shortstr(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(u8::MAX as usize)];
        self.buf.push(v.len() as u8);
        self.buf.extend_from_slice(v);
    }
    pub fn longstr(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn table(&mut self, t: FieldTable<'_>) {
        self.longstr(t.raw());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_and_round_trip() {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.u8(0xab);
        w.u16(0x0102);
        w.u32(0x0304_0506);
        w.u64(0x0708_090a_0b0c_0d0e);
        assert_eq!(v, [0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let mut r = Reader::new(&v);
        assert_eq!(r.u8(), Ok(0xab));
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u32(), Ok(0x0304_0506));
        assert_eq!(r.u64(), Ok(0x0708_090a_0b0c_0d0e));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(WireError::Truncated));
    }

    #[test]
    fn strings_round_trip_and_truncation_is_an_error() {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.shortstr(b"hello");
        w.longstr(b"world!");
        assert_eq!(&v[..6], b"\x05hello");
        assert_eq!(&v[6..10], &[0, 0, 0, 6]);
        let mut r = Reader::new(&v);
        assert_eq!(r.shortstr(), Ok(&b"hello"[..]));
        assert_eq!(r.longstr(), Ok(&b"world!"[..]));
        assert_eq!(
            Reader::new(b"\x05hell").shortstr(),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 1]).longstr(),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn shortstr_writer_truncates_at_255_bytes() {
        let long = vec![b'x'; 300];
        let mut v = Vec::new();
        Writer::new(&mut v).shortstr(&long);
        assert_eq!(v[0], 255);
        assert_eq!(v.len(), 256);
    }
}
