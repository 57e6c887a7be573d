//! Fuzz target `method`: decodes arbitrary method payloads. Whatever decodes must encode to
//! bytes that decode to the same method and re-encode identically (a codec round trip), and
//! must survive being wrapped in a frame and parsed back.
#![no_main]

use coney::protocol::frame::write_method;
use coney::protocol::method::method_name;
use coney::protocol::wire::Writer;
use coney::protocol::{parse_frame, Method, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(method) = Method::decode(data) else {
        return;
    };
    let (class_id, method_id) = method.id();
    assert_eq!(&data[..4], &[class_id.to_be_bytes(), method_id.to_be_bytes()].concat()[..]);
    assert_ne!(method_name(class_id, method_id), "unknown");
    assert_eq!(method.name(), method_name(class_id, method_id));

    let mut encoded = Vec::new();
    method.encode(&mut Writer::new(&mut encoded));
    // Re-encoding drops only trailing bytes and reserved bits, so it never grows.
    assert!(encoded.len() <= data.len(), "{} encoded to {} > {} bytes", method.name(), encoded.len(), data.len());
    let again = match Method::decode(&encoded) {
        Ok(m) => m,
        Err(e) => panic!("{} re-encoding does not decode: {e:?}\nin:  {data:02x?}\nout: {encoded:02x?}", method.name()),
    };
    assert_eq!(method, again, "round trip changed the method");
    let mut encoded_again = Vec::new();
    again.encode(&mut Writer::new(&mut encoded_again));
    assert_eq!(encoded, encoded_again, "encoding is not stable");

    let mut framed = Vec::new();
    write_method(&mut framed, 7, &method);
    match parse_frame(&framed, 0) {
        Ok(Parsed::Frame { frame, len }) => {
            assert_eq!(len, framed.len());
            assert_eq!(frame.channel, 7);
            assert_eq!(frame.payload, &encoded[..]);
        }
        other => panic!("framed {} does not parse: {other:?}", method.name()),
    }
});
