//! One value of a listing as rabbitmqctl 3.10 prints it: in a table (Erlang-looking terms such
//! as `[{"x-max-length",10}]`, tags as `[a, b]`) and in `--formatter json` (AMQP tables as
//! `[["x-max-length","signedint",10]]`, addresses as `[127,0,0,1]`). The API gives JSON, so
//! the AMQP type of a table value is inferred from it: a whole number in i32's range is
//! `signedint`, a larger one `long`, a fraction `double`, text `longstr`, true/false `bool`,
//! an object `table`, a list `array`, null `void` — what pika and the Java client send for
//! the same values. Also the JSON writer with sorted keys used for documents.

use serde_json::Value;

/// How a column's value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text, numbers and booleans as they are; missing is empty.
    Plain,
    /// An AMQP field table (arguments, client properties).
    Table,
    /// A list of tags: `[a, b]`, JSON `["a","b"]`; also accepts the old comma-separated form.
    Tags,
    /// An IP address: text in a table, a list of numbers in JSON (Erlang's address tuple).
    Ip,
    /// `AMQP 0-9-1` shown as rabbitmqctl's `{0,9,1}`.
    Protocol,
    /// A JSON document shown as compact JSON text (a policy's definition).
    JsonText,
}

/// The table text of a value.
pub fn table_text(value: Option<&Value>, kind: Kind) -> String {
    let value = value.unwrap_or(&Value::Null);
    match kind {
        Kind::Plain => match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => json_text(other),
        },
        Kind::Table => match value {
            Value::Null => "[]".into(),
            other => erlang_term(other),
        },
        Kind::Tags => format!("[{}]", tags(value).join(", ")),
        Kind::Ip | Kind::Protocol => match value {
            Value::String(s) => match kind {
                Kind::Protocol => protocol_version(s)
                    .map(|v| format!("{{{}}}", join_numbers(&v)))
                    .unwrap_or_else(|| s.clone()),
                _ => s.clone(),
            },
            Value::Null => String::new(),
            other => json_text(other),
        },
        Kind::JsonText => match value {
            Value::Null => String::new(),
            other => json_text(other),
        },
    }
}

/// The `--formatter json` text of a value.
pub fn json_value(value: Option<&Value>, kind: Kind) -> String {
    let value = value.unwrap_or(&Value::Null);
    match kind {
        Kind::Plain => match value {
            Value::Null => "\"\"".into(),
            other => json_text(other),
        },
        Kind::Table => amqp_table_json(value),
        Kind::Tags => format!(
            "[{}]",
            tags(value)
                .iter()
                .map(|t| json_string(t))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Kind::Ip => match value {
            Value::String(s) => match ip_numbers(s) {
                Some(parts) => format!("[{}]", join_numbers(&parts)),
                None => json_string(s),
            },
            Value::Null => "\"\"".into(),
            other => json_text(other),
        },
        Kind::Protocol => match value {
            Value::String(s) => match protocol_version(s) {
                Some(v) => format!("[{}]", join_numbers(&v)),
                None => json_string(s),
            },
            Value::Null => "\"\"".into(),
            other => json_text(other),
        },
        Kind::JsonText => match value {
            Value::Null => "\"\"".into(),
            other => json_string(&json_text(other)),
        },
    }
}

fn join_numbers(parts: &[u32]) -> String {
    parts
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn tags(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => s.clone(),
                other => json_text(other),
            })
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// An address as Erlang's tuple: 4 bytes for IPv4, 8 sixteen-bit groups for IPv6.
fn ip_numbers(s: &str) -> Option<Vec<u32>> {
    match s.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => Some(v4.octets().iter().map(|&b| u32::from(b)).collect()),
        std::net::IpAddr::V6(v6) => Some(v6.segments().iter().map(|&g| u32::from(g)).collect()),
    }
}

/// `AMQP 0-9-1` → [0, 9, 1].
fn protocol_version(s: &str) -> Option<Vec<u32>> {
    let version = s.strip_prefix("AMQP ")?;
    version.split('-').map(|p| p.parse().ok()).collect()
}

/// A JSON string literal (serde_json's escaping: `\t`, `\"`, `\\`, `\u00XX`; UTF-8 as is).
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Compact JSON with object keys sorted, whatever order the map keeps.
pub fn json_text(value: &Value) -> String {
    let mut out = String::new();
    write_sorted(value, &mut out);
    out
}

fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k));
                out.push(':');
                write_sorted(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&json_string(s)),
        other => out.push_str(&other.to_string()),
    }
}

/// A value as Erlang prints it in rabbitmqctl's tables: tables as `[{"k",V}]`, strings
/// quoted, lists `[..]`, null as `undefined`.
fn erlang_term(value: &Value) -> String {
    match value {
        Value::Null => "undefined".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => erlang_string(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(erlang_term).collect::<Vec<_>>().join(",")
        ),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{{{},{}}}", erlang_string(k), erlang_term(&map[k])))
                .collect();
            format!("[{}]", parts.join(","))
        }
    }
}

fn erlang_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{:o}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The AMQP type name rabbitmqctl shows for a value, inferred from its JSON form.
fn amqp_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "void",
        Value::Bool(_) => "bool",
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => "signedint",
            Some(_) => "long",
            None if n.is_u64() => "long",
            None => "double",
        },
        Value::String(_) => "longstr",
        Value::Array(_) => "array",
        Value::Object(_) => "table",
    }
}

/// A field table as rabbitmqctl's JSON formatter shows it: `[[key, type, value], ...]`.
fn amqp_table_json(value: &Value) -> String {
    let Value::Object(map) = value else {
        return "[]".into();
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let parts: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let v = &map[k];
            format!(
                "[{},\"{}\",{}]",
                json_string(k),
                amqp_type(v),
                amqp_field_json(v)
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// A field value in rabbitmqctl's JSON: tables nested as above, arrays as an object of
/// `"type": value` pairs (rabbitmqctl 3.10's own shape for them), null as "undefined".
fn amqp_field_json(value: &Value) -> String {
    match value {
        Value::Null => "\"undefined\"".into(),
        Value::Object(_) => amqp_table_json(value),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| format!("\"{}\":{}", amqp_type(v), amqp_field_json(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => json_text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Arguments look like rabbitmqctl 3.10's table and JSON output for the same declare
    /// (recorded from `rabbitmqctl list_queues name arguments` for a pika declare).
    #[test]
    fn arguments_as_rabbitmqctl_prints_them() {
        let args = json!({"a": [1, "two", false], "b": true, "big": 1099511627776u64,
                          "n": {"x": 1, "y": "z"}, "neg": -3, "s": "str", "u": "héllo"});
        assert_eq!(
            table_text(Some(&args), Kind::Table),
            r#"[{"a",[1,"two",false]},{"b",true},{"big",1099511627776},{"n",[{"x",1},{"y","z"}]},{"neg",-3},{"s","str"},{"u","héllo"}]"#
        );
        assert_eq!(
            json_value(Some(&args), Kind::Table),
            r#"[["a","array",{"signedint":1,"longstr":"two","bool":false}],["b","bool",true],["big","long",1099511627776],["n","table",[["x","signedint",1],["y","longstr","z"]]],["neg","signedint",-3],["s","longstr","str"],["u","longstr","héllo"]]"#
        );
        assert_eq!(table_text(Some(&json!({})), Kind::Table), "[]");
        assert_eq!(json_value(None, Kind::Table), "[]");
        assert_eq!(table_text(None, Kind::Table), "[]");
    }

    /// Tags, addresses and the protocol in both forms.
    #[test]
    fn tags_addresses_protocol() {
        let t = json!(["management", "monitoring"]);
        assert_eq!(table_text(Some(&t), Kind::Tags), "[management, monitoring]");
        assert_eq!(
            json_value(Some(&t), Kind::Tags),
            r#"["management","monitoring"]"#
        );
        assert_eq!(table_text(Some(&json!("a,b")), Kind::Tags), "[a, b]");
        assert_eq!(table_text(Some(&json!([])), Kind::Tags), "[]");
        let ip = json!("127.0.0.1");
        assert_eq!(table_text(Some(&ip), Kind::Ip), "127.0.0.1");
        assert_eq!(json_value(Some(&ip), Kind::Ip), "[127,0,0,1]");
        assert_eq!(
            json_value(Some(&json!("::1")), Kind::Ip),
            "[0,0,0,0,0,0,0,1]"
        );
        let p = json!("AMQP 0-9-1");
        assert_eq!(table_text(Some(&p), Kind::Protocol), "{0,9,1}");
        assert_eq!(json_value(Some(&p), Kind::Protocol), "[0,9,1]");
    }

    /// Plain values: strings raw in a table (tabs included, as rabbitmqctl), escaped in JSON;
    /// a missing value is empty.
    #[test]
    fn plain_values() {
        let name = json!("q tab\there");
        assert_eq!(table_text(Some(&name), Kind::Plain), "q tab\there");
        assert_eq!(json_value(Some(&name), Kind::Plain), r#""q tab\there""#);
        assert_eq!(table_text(Some(&json!(3)), Kind::Plain), "3");
        assert_eq!(table_text(Some(&json!(false)), Kind::Plain), "false");
        assert_eq!(table_text(None, Kind::Plain), "");
        assert_eq!(json_value(Some(&Value::Null), Kind::Plain), r#""""#);
    }

    /// A policy definition is compact JSON with sorted keys; in JSON output, a string of it.
    #[test]
    fn definition_text() {
        let d = json!({"message-ttl": 1000, "dead-letter-exchange": "dlx"});
        assert_eq!(
            table_text(Some(&d), Kind::JsonText),
            r#"{"dead-letter-exchange":"dlx","message-ttl":1000}"#
        );
        assert_eq!(
            json_value(Some(&d), Kind::JsonText),
            r#""{\"dead-letter-exchange\":\"dlx\",\"message-ttl\":1000}""#
        );
    }
}
