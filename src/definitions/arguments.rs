//! Arguments of queues, exchanges and bindings between a definitions file's JSON objects and
//! AMQP field tables (the raw table bytes the broker stores, without the length prefix).
//!
//! Both directions follow RabbitMQ 3.10 (`rabbit_misc:to_amqp_table` on import,
//! `rabbit_misc:amqp_table` on export), checked by declaring every type with pika, exporting,
//! importing and reading the stored types back: JSON integers become signed 64-bit ('l'),
//! other numbers doubles ('d'), strings long strings, lists arrays, objects tables, and null
//! is refused. On export every integer type and timestamps become numbers, a decimal becomes
//! the float "scale.value" (RabbitMQ's quirk: scale 2, value 256 is 2.256), void becomes the
//! string "undefined", and a string or byte array that is not UTF-8 becomes
//! "Not UTF-8, base64 is: …" wrapped every 76 characters.

use super::document::JsonTable;
use crate::auth::base64;
use crate::limits::TABLE_DEPTH_MAX;
use crate::protocol::table::{FieldTable, FieldValue};
use crate::protocol::wire::Writer;
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why arguments could not be converted; `key` is the path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentError {
    /// JSON null has no AMQP form (RabbitMQ: null_not_allowed).
    Null { key: String },
    /// An integer beyond the signed 64-bit range.
    OutOfRange { key: String },
    /// Nested deeper than a field table may be (`TABLE_DEPTH_MAX`).
    TooDeep { key: String },
    /// A table key longer than a short string (255 bytes).
    KeyTooLong { key: String },
    /// A NaN or infinite float, which JSON cannot write (RabbitMQ never holds one).
    NotFinite { key: String },
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgumentError::Null { key } => write!(f, "argument '{key}' is null"),
            ArgumentError::OutOfRange { key } => {
                write!(f, "argument '{key}' is beyond the 64-bit integer range")
            }
            ArgumentError::TooDeep { key } => {
                write!(
                    f,
                    "argument '{key}' is nested deeper than {TABLE_DEPTH_MAX}"
                )
            }
            ArgumentError::KeyTooLong { key } => write!(f, "argument key '{key}' is too long"),
            ArgumentError::NotFinite { key } => {
                write!(f, "argument '{key}' is not a finite number")
            }
        }
    }
}

/// Encodes a JSON object as field-table contents (keys in the object's sorted order, as
/// RabbitMQ orders them).
pub fn json_to_table(args: &JsonTable) -> Result<Vec<u8>, ArgumentError> {
    let mut out = Vec::new();
    write_table(&mut Writer::new(&mut out), args, 0, "")?;
    debug_assert!(FieldTable::parse(&out).is_ok());
    Ok(out)
}

fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn write_table(
    w: &mut Writer<'_>,
    t: &JsonTable,
    depth: usize,
    at: &str,
) -> Result<(), ArgumentError> {
    for (k, v) in t {
        let key = path(at, k);
        if k.len() > u8::MAX as usize {
            return Err(ArgumentError::KeyTooLong { key });
        }
        w.shortstr(k.as_bytes());
        write_value(w, v, depth, &key)?;
    }
    Ok(())
}

fn write_value(
    w: &mut Writer<'_>,
    v: &Value,
    depth: usize,
    key: &str,
) -> Result<(), ArgumentError> {
    match v {
        Value::Null => {
            return Err(ArgumentError::Null {
                key: key.to_owned(),
            })
        }
        Value::Bool(b) => {
            w.u8(b't');
            w.u8(*b as u8);
        }
        Value::Number(n) => write_number(w, n, key)?,
        Value::String(s) => {
            w.u8(b'S');
            w.longstr(s.as_bytes());
        }
        Value::Array(items) => {
            let inner = nested(depth, key, |w| {
                items
                    .iter()
                    .try_for_each(|item| write_value(w, item, depth + 1, key))
            })?;
            w.u8(b'A');
            w.longstr(&inner);
        }
        Value::Object(m) => {
            let inner = nested(depth, key, |w| write_table(w, m, depth + 1, key))?;
            w.u8(b'F');
            w.longstr(&inner);
        }
    }
    Ok(())
}

/// Writes a nested container into its own buffer, refusing depth beyond the table limit
/// (the broker's parser counts the top-level table as depth 0).
fn nested(
    depth: usize,
    key: &str,
    f: impl FnOnce(&mut Writer<'_>) -> Result<(), ArgumentError>,
) -> Result<Vec<u8>, ArgumentError> {
    if depth + 1 > TABLE_DEPTH_MAX {
        return Err(ArgumentError::TooDeep {
            key: key.to_owned(),
        });
    }
    let mut inner = Vec::new();
    f(&mut Writer::new(&mut inner))?;
    Ok(inner)
}

fn write_number(w: &mut Writer<'_>, n: &Number, key: &str) -> Result<(), ArgumentError> {
    if let Some(i) = n.as_i64() {
        w.u8(b'l');
        w.u64(i as u64);
    } else if n.is_u64() {
        return Err(ArgumentError::OutOfRange {
            key: key.to_owned(),
        });
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        w.u8(b'd');
        w.u64(f.to_bits());
    }
    Ok(())
}

/// Decodes field-table contents into the JSON object RabbitMQ would export.
pub fn table_to_json(table: FieldTable<'_>) -> Result<JsonTable, ArgumentError> {
    table_json(table, "")
}

fn table_json(table: FieldTable<'_>, at: &str) -> Result<JsonTable, ArgumentError> {
    let mut m = Map::new();
    for (k, v) in table.iter() {
        let k = String::from_utf8_lossy(k).into_owned();
        let key = path(at, &k);
        // A repeated key keeps the last value, as maps:from_list does.
        m.insert(k, value_json(v, &key)?);
    }
    Ok(m)
}

fn value_json(v: FieldValue<'_>, key: &str) -> Result<Value, ArgumentError> {
    let float = |f: f64| {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| ArgumentError::NotFinite {
                key: key.to_owned(),
            })
    };
    Ok(match v {
        FieldValue::Bool(b) => Value::Bool(b),
        FieldValue::I8(i) => i.into(),
        FieldValue::U8(i) => i.into(),
        FieldValue::I16(i) => i.into(),
        FieldValue::U16(i) => i.into(),
        FieldValue::I32(i) => i.into(),
        FieldValue::U32(i) => i.into(),
        FieldValue::I64(i) => i.into(),
        FieldValue::Timestamp(t) => t.into(),
        FieldValue::F32(f) => float(f64::from(f))?,
        FieldValue::F64(f) => float(f)?,
        FieldValue::Decimal { scale, value } => float(
            format!("{scale}.{value}")
                .parse::<f64>()
                .unwrap_or(f64::NAN),
        )?,
        FieldValue::LongStr(b) | FieldValue::Bytes(b) => Value::String(utf8_safe(b)),
        FieldValue::Void => Value::String("undefined".to_owned()),
        FieldValue::Array(a) => Value::Array(
            a.iter()
                .map(|item| value_json(item, key))
                .collect::<Result<_, _>>()?,
        ),
        FieldValue::Table(t) => Value::Object(table_json(t, key)?),
    })
}

/// RabbitMQ's `utf8_safe`: UTF-8 text as is, anything else as base64 behind a marker.
fn utf8_safe(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        return s.to_owned();
    }
    let encoded = base64::encode(b);
    let mut out = String::from("Not UTF-8, base64 is: ");
    let mut rest = encoded.as_str();
    while rest.len() >= 76 {
        out.push_str(&rest[..76]);
        out.push('\n');
        rest = &rest[76..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonTable {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// JSON → table gives RabbitMQ's import types, checked on 3.10 with `rabbit_amqqueue:
    /// lookup` after importing {"big":1e300,"float":1.5,"int":5,"l":[1,2.5],"neg-float":-0.25,
    /// "s":"x","t":{"k":true}}: double, double, long, array[long,double], double, longstr,
    /// table[bool] — in key order.
    #[test]
    fn import_types_match_rabbitmq() {
        let args = obj(json!({"big": 1e300, "float": 1.5, "int": 5, "l": [1, 2.5],
                              "neg-float": -0.25, "s": "x", "t": {"k": true}}));
        let raw = json_to_table(&args).unwrap();
        let t = FieldTable::parse(&raw).unwrap();
        let got: Vec<(String, FieldValue<'_>)> = t
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v))
            .collect();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["big", "float", "int", "l", "neg-float", "s", "t"]);
        assert_eq!(got[0].1, FieldValue::F64(1e300));
        assert_eq!(got[1].1, FieldValue::F64(1.5));
        assert_eq!(got[2].1, FieldValue::I64(5));
        match got[3].1 {
            FieldValue::Array(a) => assert_eq!(
                a.iter().collect::<Vec<_>>(),
                [FieldValue::I64(1), FieldValue::F64(2.5)]
            ),
            ref other => panic!("{other:?}"),
        }
        assert_eq!(got[5].1, FieldValue::LongStr(b"x"));
        match got[6].1 {
            FieldValue::Table(inner) => assert_eq!(inner.get(b"k"), Some(FieldValue::Bool(true))),
            ref other => panic!("{other:?}"),
        }
        assert_eq!(table_to_json(t).unwrap(), args, "and back");
    }

    /// Table → JSON gives RabbitMQ's export of the queue app.types in the fixture, declared
    /// by pika with bool, 32/64-bit ints, decimal 2.56, str, bytes, timestamp, void, list and
    /// nested table values.
    #[test]
    fn export_forms_match_rabbitmq() {
        let mut raw = Vec::new();
        let mut w = Writer::new(&mut raw);
        let mut entry = |k: &str, tag: u8, body: &[u8]| {
            w.shortstr(k.as_bytes());
            w.u8(tag);
            w.bytes(body);
        };
        entry("bool-t", b't', &[1]);
        entry("int-neg", b'I', &(-42i32).to_be_bytes());
        entry("int-big", b'l', &(1u64 << 40).to_be_bytes());
        entry("decimal", b'D', &[2, 0, 0, 1, 0]);
        entry("str", b'S', b"\0\0\0\x0bhello \xc3\xbcn\xc3\xaf");
        entry("bytes", b'x', b"\0\0\0\x05\x00\xffraw");
        entry("ts", b'T', &1577934245u64.to_be_bytes());
        entry("void", b'V', &[]);
        entry("f32", b'f', &0.5f32.to_bits().to_be_bytes());
        let t = FieldTable::parse(&raw).unwrap();
        let j = Value::Object(table_to_json(t).unwrap());
        let fixture: Value = serde_json::from_slice(include_bytes!(
            "../../tests/fixtures/rabbitmq-3.10-definitions.json"
        ))
        .unwrap();
        let types = fixture["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "app.types")
            .unwrap();
        for k in [
            "bool-t", "int-neg", "int-big", "decimal", "str", "bytes", "ts", "void",
        ] {
            assert_eq!(j[k], types["arguments"][k], "{k}");
        }
        assert_eq!(j["f32"], json!(0.5));
    }

    /// Binary longer than 57 bytes is wrapped every 76 base64 characters, as RabbitMQ does.
    #[test]
    fn long_binary_is_wrapped_like_rabbitmq() {
        let b = vec![0xffu8; 57];
        assert_eq!(
            utf8_safe(&b),
            format!("Not UTF-8, base64 is: {}\n", "/".repeat(76))
        );
        let b = vec![0xffu8; 60];
        assert_eq!(
            utf8_safe(&b),
            format!("Not UTF-8, base64 is: {}\n////", "/".repeat(76))
        );
    }

    /// Values with no AMQP form, and nesting beyond the table depth limit, are refused with
    /// the path of the value.
    #[test]
    fn unrepresentable_arguments_are_refused() {
        assert_eq!(
            json_to_table(&obj(json!({"a": {"b": null}}))),
            Err(ArgumentError::Null { key: "a.b".into() })
        );
        assert_eq!(
            json_to_table(&obj(json!({"n": u64::MAX}))),
            Err(ArgumentError::OutOfRange { key: "n".into() })
        );
        let long_key = "k".repeat(256);
        assert!(matches!(
            json_to_table(&obj(json!({long_key: 1}))),
            Err(ArgumentError::KeyTooLong { .. })
        ));
        // The broker's own table parser allows TABLE_DEPTH_MAX tables inside the top one.
        let nest = |levels: usize| {
            let mut v = json!(1);
            for _ in 0..levels {
                v = json!({ "d": v });
            }
            obj(v)
        };
        let at_limit = json_to_table(&nest(TABLE_DEPTH_MAX + 1)).unwrap();
        assert!(FieldTable::parse(&at_limit).is_ok());
        assert!(matches!(
            json_to_table(&nest(TABLE_DEPTH_MAX + 2)),
            Err(ArgumentError::TooDeep { .. })
        ));
        let mut raw = Vec::new();
        let mut w = Writer::new(&mut raw);
        w.shortstr(b"nan");
        w.u8(b'd');
        w.u64(f64::NAN.to_bits());
        assert!(matches!(
            table_to_json(FieldTable::parse(&raw).unwrap()),
            Err(ArgumentError::NotFinite { .. })
        ));
    }

    /// Every argument object of the RabbitMQ fixture converts to a table the broker's own
    /// parser accepts and back to the same JSON (the decimal, void and binary forms are
    /// export-only and come back as the double or string RabbitMQ would import).
    #[test]
    fn fixture_arguments_round_trip() {
        let d = super::super::document::Definitions::parse(include_bytes!(
            "../../tests/fixtures/rabbitmq-3.10-definitions.json"
        ))
        .unwrap();
        let tables = d
            .queues
            .iter()
            .map(|q| &q.arguments)
            .chain(d.exchanges.iter().map(|x| &x.arguments))
            .chain(d.bindings.iter().map(|b| &b.arguments));
        for args in tables {
            let raw = json_to_table(args).unwrap();
            assert_eq!(
                &table_to_json(FieldTable::parse(&raw).unwrap()).unwrap(),
                args
            );
        }
    }
}
