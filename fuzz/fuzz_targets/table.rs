//! Fuzz target `table`: validates arbitrary bytes as a field table. An accepted table must be
//! fully iterable (nested tables and arrays included) within the depth limit, and re-encoding
//! the iterated values with an independent encoder must reproduce the same byte length and
//! parse back to the same values.
#![no_main]

use coney::limits::TABLE_DEPTH_MAX;
use coney::protocol::table::FieldArray;
use coney::protocol::{FieldTable, FieldValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(table) = FieldTable::parse(data) else {
        return;
    };
    assert_eq!(table.raw(), data);
    let mut encoded = Vec::new();
    encode_table(table, 0, &mut encoded);
    assert_eq!(encoded.len(), data.len(), "iteration skipped or invented bytes");
    let reparsed = FieldTable::parse(&encoded).expect("re-encoded table must validate");
    assert!(same_table(table, reparsed), "re-encoded table differs");
    if let Some((key, value)) = table.iter().next() {
        assert!(same_value(table.get(key).expect("first key is found"), value));
    }
    let _ = format!("{table:?}");
});

/// Appends the table contents (no length prefix), checking the nesting depth on the way.
fn encode_table(t: FieldTable<'_>, depth: usize, out: &mut Vec<u8>) {
    assert!(depth <= TABLE_DEPTH_MAX, "table nested {depth} deep was accepted");
    for (key, value) in t.iter() {
        assert!(key.len() <= 255);
        out.push(key.len() as u8);
        out.extend_from_slice(key);
        encode_value(value, depth, out);
    }
}

fn encode_array(a: FieldArray<'_>, depth: usize, out: &mut Vec<u8>) {
    assert!(depth <= TABLE_DEPTH_MAX, "array nested {depth} deep was accepted");
    for value in a.iter() {
        encode_value(value, depth, out);
    }
}

/// Writes `body` behind a 32-bit length prefix produced by `f`.
fn prefixed(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    f(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn encode_value(v: FieldValue<'_>, depth: usize, out: &mut Vec<u8>) {
    match v {
        FieldValue::Bool(b) => out.extend_from_slice(&[b't', b as u8]),
        FieldValue::I8(x) => out.extend_from_slice(&[b'b', x as u8]),
        FieldValue::U8(x) => out.extend_from_slice(&[b'B', x]),
        FieldValue::I16(x) => {
            out.push(b's');
            out.extend_from_slice(&x.to_be_bytes());
        }
        FieldValue::U16(x) => {
            out.push(b'u');
            out.extend_from_slice(&x.to_be_bytes());
        }
        FieldValue::I32(x) => {
            out.push(b'I');
            out.extend_from_slice(&x.to_be_bytes());
        }
        FieldValue::U32(x) => {
            out.push(b'i');
            out.extend_from_slice(&x.to_be_bytes());
        }
        FieldValue::I64(x) => {
            out.push(b'l');
            out.extend_from_slice(&x.to_be_bytes());
        }
        FieldValue::F32(x) => {
            out.push(b'f');
            out.extend_from_slice(&x.to_bits().to_be_bytes());
        }
        FieldValue::F64(x) => {
            out.push(b'd');
            out.extend_from_slice(&x.to_bits().to_be_bytes());
        }
        FieldValue::Decimal { scale, value } => {
            out.extend_from_slice(&[b'D', scale]);
            out.extend_from_slice(&value.to_be_bytes());
        }
        FieldValue::LongStr(s) => {
            out.push(b'S');
            prefixed(out, |o| o.extend_from_slice(s));
        }
        FieldValue::Bytes(s) => {
            out.push(b'x');
            prefixed(out, |o| o.extend_from_slice(s));
        }
        FieldValue::Timestamp(x) => {
            out.push(b'T');
            out.extend_from_slice(&x.to_be_bytes());
        }
        FieldValue::Void => out.push(b'V'),
        FieldValue::Array(a) => {
            out.push(b'A');
            prefixed(out, |o| encode_array(a, depth + 1, o));
        }
        FieldValue::Table(t) => {
            out.push(b'F');
            prefixed(out, |o| encode_table(t, depth + 1, o));
        }
    }
}

fn same_table(a: FieldTable<'_>, b: FieldTable<'_>) -> bool {
    let (mut x, mut y) = (a.iter(), b.iter());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some((ka, va)), Some((kb, vb))) if ka == kb && same_value(va, vb) => {}
            _ => return false,
        }
    }
}

/// Structural equality with floats compared by bits (NaN is a legal table value).
fn same_value(a: FieldValue<'_>, b: FieldValue<'_>) -> bool {
    match (a, b) {
        (FieldValue::F32(x), FieldValue::F32(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::F64(x), FieldValue::F64(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::Table(x), FieldValue::Table(y)) => same_table(x, y),
        (FieldValue::Array(x), FieldValue::Array(y)) => {
            let (mut p, mut q) = (x.iter(), y.iter());
            loop {
                match (p.next(), q.next()) {
                    (None, None) => return true,
                    (Some(u), Some(v)) if same_value(u, v) => {}
                    _ => return false,
                }
            }
        }
        (x, y) => x == y,
    }
}
