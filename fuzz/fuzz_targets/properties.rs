//! Fuzz target `properties`: decodes arbitrary bytes as a content header payload and as a bare
//! basic property list. Accepted properties must re-encode to exactly the bytes they were read
//! from (minus trailing bytes), decode back equal, and survive a content header frame.
#![no_main]

use coney::protocol::frame::write_content_header;
use coney::protocol::wire::Writer;
use coney::protocol::{parse_frame, BasicProperties, ContentHeader, FrameKind, Parsed};
use libfuzzer_sys::fuzz_target;

/// class id, weight, body size.
const HEADER_FIXED_BYTES: usize = 12;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = ContentHeader::decode(data) {
        assert!(data.len() >= HEADER_FIXED_BYTES);
        assert_eq!(header.class_id, u16::from_be_bytes([data[0], data[1]]));
        assert_eq!(header.body_size.to_be_bytes(), data[4..12]);
        assert_eq!(header.properties_raw, &data[HEADER_FIXED_BYTES..]);
        check_frame_round_trip(header);
        check_properties(header.properties_raw);
    } else {
        assert!(data.len() < HEADER_FIXED_BYTES, "a header of {} bytes was refused", data.len());
    }
    check_properties(data);
});

fn check_properties(raw: &[u8]) {
    let Ok(props) = BasicProperties::decode(raw) else {
        return;
    };
    let mut encoded = Vec::new();
    props.encode(&mut Writer::new(&mut encoded));
    assert!(encoded.len() <= raw.len(), "encoding grew: {} > {}", encoded.len(), raw.len());
    assert_eq!(encoded, raw[..encoded.len()], "encoding differs from the accepted bytes");
    let again = BasicProperties::decode(&encoded).expect("re-encoded properties must decode");
    assert_eq!(props, again);
    let mut encoded_again = Vec::new();
    again.encode(&mut Writer::new(&mut encoded_again));
    assert_eq!(encoded, encoded_again);
    assert_eq!(props.is_persistent(), props.delivery_mode == Some(2));
    if let Some(headers) = props.headers {
        let _ = headers.iter().count();
    }
}

/// The broker forwards property bytes unchanged through `write_content_header`.
fn check_frame_round_trip(header: ContentHeader<'_>) {
    let mut framed = Vec::new();
    write_content_header(&mut framed, 3, header.class_id, header.body_size, header.properties_raw);
    match parse_frame(&framed, 0) {
        Ok(Parsed::Frame { frame, len }) => {
            assert_eq!(len, framed.len());
            assert_eq!(frame.kind, FrameKind::Header);
            assert_eq!(ContentHeader::decode(frame.payload), Ok(header));
        }
        other => panic!("content header frame does not parse: {other:?}"),
    }
}
