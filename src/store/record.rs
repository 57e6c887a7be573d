//! The on-disk record format shared by segment files and the definitions file.
//!
//! ```text
//! file:    magic (8 bytes) | format version u32 | reserved u32 | record*
//! record:  length u32 | crc32c u32 | kind u8 | payload (length bytes)
//! ```
//! The checksum covers kind and payload. A record that fails its checksum, or runs past the
//! end of the file, is not applied; recovery resynchronises on the next valid record.

use super::crc::crc32c;

pub const FILE_HEADER_BYTES: usize = 16;
pub const RECORD_HEADER_BYTES: usize = 9;
/// Format version written in every file header; files of another version are refused.
pub const FORMAT_VERSION: u32 = 1;
/// No single record is larger than a whole message plus its routing data.
pub const RECORD_PAYLOAD_MAX_BYTES: usize = 256 * 1024 * 1024;

pub fn file_header(magic: &[u8; 8]) -> [u8; FILE_HEADER_BYTES] {
    file_header_version(magic, FORMAT_VERSION)
}

pub fn file_header_version(magic: &[u8; 8], version: u32) -> [u8; FILE_HEADER_BYTES] {
    let mut h = [0u8; FILE_HEADER_BYTES];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&version.to_be_bytes());
    h
}

/// Checks a file header; returns the version if the magic matches.
pub fn check_file_header(buf: &[u8], magic: &[u8; 8]) -> Option<u32> {
    if buf.len() < FILE_HEADER_BYTES || &buf[..8] != magic {
        return None;
    }
    Some(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]))
}

/// Appends one record with the payload written by `f`.
pub fn write_record(out: &mut Vec<u8>, kind: u8, f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    out[start + 8] = kind;
    f(out);
    let len = (out.len() - start - RECORD_HEADER_BYTES) as u32;
    let crc = crc32c(&[&out[start + 8..]]);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// What is at an offset of a file body.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    Record {
        kind: u8,
        payload: &'a [u8],
        len: usize,
    },
    /// The record runs past the end of the data (a torn tail, if nothing valid follows).
    Truncated,
    /// Checksum or length is wrong.
    Corrupt,
}

pub fn scan(buf: &[u8]) -> Scan<'_> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Scan::Truncated;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > RECORD_PAYLOAD_MAX_BYTES {
        return Scan::Corrupt;
    }
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let total = RECORD_HEADER_BYTES + len;
    if buf.len() < total {
        return Scan::Truncated;
    }
    if crc32c(&[&buf[8..total]]) != crc {
        return Scan::Corrupt;
    }
    Scan::Record {
        kind: buf[8],
        payload: &buf[RECORD_HEADER_BYTES..total],
        len: total,
    }
}

/// Finds the next offset after `from` where a valid record starts, if any.
pub fn resync(buf: &[u8], from: usize) -> Option<usize> {
    (from + 1..buf.len()).find(|&at| matches!(scan(&buf[at..]), Scan::Record { .. }))
}

/// One step of walking a file body record by record.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Record {
        at: usize,
        kind: u8,
        payload: &'a [u8],
        len: usize,
    },
    /// Damage from `at` to `next`, where a valid record starts again.
    Damaged { at: usize, next: usize },
    /// Nothing valid from `at` to the end: a torn tail. The walk ends.
    Torn { at: usize },
}

/// Walks the records of `buf` from `at`, resynchronising after damage. Deterministic, so two
/// walks over the same bytes see the same records.
pub struct Walk<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Walk<'a> {
    pub fn new(buf: &'a [u8], at: usize) -> Self {
        Walk { buf, at }
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = Step<'a>;
    fn next(&mut self) -> Option<Step<'a>> {
        let at = self.at;
        if at >= self.buf.len() {
            return None;
        }
        match scan(&self.buf[at..]) {
            Scan::Record { kind, payload, len } => {
                self.at += len;
                Some(Step::Record {
                    at,
                    kind,
                    payload,
                    len,
                })
            }
            Scan::Truncated | Scan::Corrupt => match resync(self.buf, at) {
                Some(next) => {
                    self.at = next;
                    Some(Step::Damaged { at, next })
                }
                None => {
                    self.at = self.buf.len();
                    Some(Step::Torn { at })
                }
            },
        }
    }
}

/// Bounds-checked little reader over a record payload.
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
    }
    /// A byte string with a u32 length prefix.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_torn_prefix_is_truncated() {
        let mut out = Vec::new();
        write_record(&mut out, 7, |p| p.extend_from_slice(b"payload"));
        match scan(&out) {
            Scan::Record {
                kind: 7,
                payload,
                len,
            } => {
                assert_eq!(payload, b"payload");
                assert_eq!(len, out.len());
            }
            other => panic!("{other:?}"),
        }
        for cut in 0..out.len() {
            assert_eq!(scan(&out[..cut]), Scan::Truncated, "cut {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_is_corrupt_and_resync_finds_the_next_record() {
        let mut out = Vec::new();
        write_record(&mut out, 1, |p| p.extend_from_slice(b"first"));
        let second = out.len();
        write_record(&mut out, 2, |p| p.extend_from_slice(b"second"));
        out[10] ^= 0x40;
        assert_eq!(scan(&out), Scan::Corrupt);
        assert_eq!(resync(&out, 0), Some(second));
    }
}
