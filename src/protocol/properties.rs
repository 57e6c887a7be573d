//! Content header frames and the 14 basic properties (AMQP 0-9-1 §4.2.6.1): a borrowed,
//! validated view for decoding and an encoder for the same fields.
//!
//! The broker keeps a message's property bytes exactly as the publisher sent them and passes
//! them on unchanged, so decoding here is validation plus the few fields the broker reads.

use super::table::FieldTable;
use super::wire::{Reader, WireError, Writer};

/// A content header frame payload, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentHeader<'a> {
    pub class_id: u16,
    pub body_size: u64,
    /// Property flags and property list, undecoded.
    pub properties_raw: &'a [u8],
}

impl<'a> ContentHeader<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let class_id = r.u16().map_err(|_| WireError::BadHeader)?;
        let _weight = r.u16().map_err(|_| WireError::BadHeader)?;
        let body_size = r.u64().map_err(|_| WireError::BadHeader)?;
        Ok(ContentHeader {
            class_id,
            body_size,
            properties_raw: r.rest(),
        })
    }
}

/// The basic class's properties. Strings are raw bytes, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BasicProperties<'a> {
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    pub headers: Option<FieldTable<'a>>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<&'a [u8]>,
    pub reply_to: Option<&'a [u8]>,
    pub expiration: Option<&'a [u8]>,
    pub message_id: Option<&'a [u8]>,
    pub timestamp: Option<u64>,
    pub kind: Option<&'a [u8]>,
    pub user_id: Option<&'a [u8]>,
    pub app_id: Option<&'a [u8]>,
    pub cluster_id: Option<&'a [u8]>,
}

// Flag bits, most significant first, in property order. Bit 0 is the continuation flag.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// Bits that name no property of the basic class (bit 1 is reserved, bit 0 is continuation).
const UNUSED_BITS: u16 = 0b11;

/// Delivery mode 2 marks a message persistent.
pub const DELIVERY_MODE_PERSISTENT: u8 = 2;

impl<'a> BasicProperties<'a> {
    /// Decodes and validates a property flags word and its property list.
    pub fn decode(raw: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(raw);
        let bad = |_| WireError::BadHeader;
        let flags = r.u16().map_err(bad)?;
        if flags & UNUSED_BITS != 0 {
            return Err(WireError::BadHeader);
        }
        let mut p = BasicProperties::default();
        let has = |bit: u16| flags & bit != 0;
        if has(CONTENT_TYPE) {
            p.content_type = Some(r.shortstr().map_err(bad)?);
        }
        if has(CONTENT_ENCODING) {
            p.content_encoding = Some(r.shortstr().map_err(bad)?);
        }
        if has(HEADERS) {
            p.headers = Some(r.table().map_err(|_| WireError::BadHeader)?);
        }
        if has(DELIVERY_MODE) {
            p.delivery_mode = Some(r.u8().map_err(bad)?);
        }
        if has(PRIORITY) {
            p.priority = Some(r.u8().map_err(bad)?);
        }
        if has(CORRELATION_ID) {
            p.correlation_id = Some(r.shortstr().map_err(bad)?);
        }
        if has(REPLY_TO) {
            p.reply_to = Some(r.shortstr().map_err(bad)?);
        }
        if has(EXPIRATION) {
            p.expiration = Some(r.shortstr().map_err(bad)?);
        }
        if has(MESSAGE_ID) {
            p.message_id = Some(r.shortstr().map_err(bad)?);
        }
        if has(TIMESTAMP) {
            p.timestamp = Some(r.u64().map_err(bad)?);
        }
        if has(TYPE) {
            p.kind = Some(r.shortstr().map_err(bad)?);
        }
        if has(USER_ID) {
            p.user_id = Some(r.shortstr().map_err(bad)?);
        }
        if has(APP_ID) {
            p.app_id = Some(r.shortstr().map_err(bad)?);
        }
        if has(CLUSTER_ID) {
            p.cluster_id = Some(r.shortstr().map_err(bad)?);
        }
        Ok(p)
    }

    /// Appends the flags word and property list.
    pub fn encode(&self, w: &mut Writer<'_>) {
        let mut flags = 0u16;
        let mut set = |present: bool, bit: u16| {
            if present {
                flags |= bit
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), TYPE);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        w.u16(flags);
        let s = |w: &mut Writer<'_>, v: Option<&[u8]>| {
            if let Some(v) = v {
                w.shortstr(v)
            }
        };
        s(w, self.content_type);
        s(w, self.content_encoding);
        if let Some(h) = self.headers {
            w.table(h);
        }
        if let Some(v) = self.delivery_mode {
            w.u8(v);
        }
        if let Some(v) = self.priority {
            w.u8(v);
        }
        s(w, self.correlation_id);
        s(w, self.reply_to);
        s(w, self.expiration);
        s(w, self.message_id);
        if let Some(v) = self.timestamp {
            w.u64(v);
        }
        s(w, self.kind);
        s(w, self.user_id);
        s(w, self.app_id);
        s(w, self.cluster_id);
    }

    /// Whether a raw property list carries a headers table, without decoding it.
    pub fn has_headers(raw: &[u8]) -> bool {
        raw.first().is_some_and(|b| (*b as u16) << 8 & HEADERS != 0)
    }

    /// Whether a raw property list carries a priority, without decoding it.
    pub fn has_priority(raw: &[u8]) -> bool {
        raw.first()
            .is_some_and(|b| (*b as u16) << 8 & PRIORITY != 0)
    }

    /// Whether a raw property list carries an expiration, without decoding it.
    pub fn has_expiration(raw: &[u8]) -> bool {
        raw.first()
            .is_some_and(|b| (*b as u16) << 8 & EXPIRATION != 0)
    }

    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(DELIVERY_MODE_PERSISTENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_fourteen_properties_round_trip() {
        let headers = FieldTable::parse(b"\x01aI\x00\x00\x00\x05").expect("table");
        let p = BasicProperties {
            content_type: Some(b"text/plain"),
            content_encoding: Some(b"utf-8"),
            headers: Some(headers),
            delivery_mode: Some(2),
            priority: Some(9),
            correlation_id: Some(b"corr"),
            reply_to: Some(b"amq.gen-reply"),
            expiration: Some(b"60000"),
            message_id: Some(b"m-1"),
            timestamp: Some(1_700_000_000),
            kind: Some(b"kind"),
            user_id: Some(b"guest"),
            app_id: Some(b"app"),
            cluster_id: Some(b"cluster"),
        };
        let mut v = Vec::new();
        p.encode(&mut Writer::new(&mut v));
        assert_eq!(&v[..2], &[0xff, 0xfc]);
        assert_eq!(BasicProperties::decode(&v), Ok(p));
        assert!(p.is_persistent());
    }

    #[test]
    fn has_headers_reads_only_the_flag_bit() {
        let mut v = Vec::new();
        let t = FieldTable::parse(b"").expect("empty table");
        BasicProperties {
            headers: Some(t),
            ..Default::default()
        }
        .encode(&mut Writer::new(&mut v));
        assert!(BasicProperties::has_headers(&v));
        let mut w = Vec::new();
        BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        }
        .encode(&mut Writer::new(&mut w));
        assert!(!BasicProperties::has_headers(&w));
        assert!(!BasicProperties::has_headers(&[]));
    }

    #[test]
    fn empty_properties_are_a_zero_flags_word() {
        let mut v = Vec::new();
        BasicProperties::default().encode(&mut Writer::new(&mut v));
        assert_eq!(v, [0, 0]);
        assert_eq!(BasicProperties::decode(&v), Ok(BasicProperties::default()));
    }

    #[test]
    fn truncated_or_unknown_flags_are_rejected() {
        assert_eq!(BasicProperties::decode(&[0x80]), Err(WireError::BadHeader));
        assert_eq!(
            BasicProperties::decode(&[0x80, 0x00, 0x05, b'a']),
            Err(WireError::BadHeader)
        );
        assert_eq!(
            BasicProperties::decode(&[0x00, 0x01]),
            Err(WireError::BadHeader)
        );
    }

    #[test]
    fn content_header_splits_size_and_properties() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x10, 0x00, 2];
        let h = ContentHeader::decode(&payload).expect("header");
        assert_eq!(h.class_id, 60);
        assert_eq!(h.body_size, 256);
        assert_eq!(
            BasicProperties::decode(h.properties_raw).map(|p| p.delivery_mode),
            Ok(Some(2))
        );
        assert_eq!(
            ContentHeader::decode(&payload[..5]),
            Err(WireError::BadHeader)
        );
    }
}
