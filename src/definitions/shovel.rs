//! The `shovel` runtime parameter's value (RabbitMQ's dynamic shovel definition) checked as
//! RabbitMQ 3.10 checks it, into a `ShovelSpec`. Pure: JSON in, a spec or RabbitMQ's
//! validation lines out. The keys coney does not act on are refused by name, never ignored.

use serde_json::Value;

/// The component name of shovels among runtime parameters.
pub const SHOVEL_COMPONENT: &str = "shovel";

/// When the source is acked; RabbitMQ's `ack-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// After the destination confirmed the message (the default).
    OnConfirm,
    /// After the message was handed to the destination connection.
    OnPublish,
    /// The source delivers without acks.
    NoAck,
}

impl AckMode {
    pub fn name(self) -> &'static str {
        match self {
            AckMode::OnConfirm => "on-confirm",
            AckMode::OnPublish => "on-publish",
            AckMode::NoAck => "no-ack",
        }
    }
}

/// What the shovel consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Queue(String),
    /// A server-named exclusive queue bound to the exchange with the key.
    Exchange {
        exchange: String,
        key: String,
    },
}

/// When the shovel deletes itself; RabbitMQ's `src-delete-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAfter {
    Never,
    /// The source queue's length when the shovel started.
    QueueLength,
    Count(u64),
}

/// One shovel's definition, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ShovelSpec {
    pub src_uri: String,
    pub source: Source,
    pub dest_uri: String,
    /// Publish to this exchange (`""` for dest-queue); None keeps the message's own.
    pub dest_exchange: Option<String>,
    /// Publish with this routing key (dest-queue's name, or dest-exchange-key); None keeps
    /// the message's own.
    pub dest_key: Option<String>,
    pub dest_queue: Option<String>,
    pub ack_mode: AckMode,
    pub prefetch: u16,
    pub reconnect_delay_secs: f64,
    pub delete_after: DeleteAfter,
    pub add_forward_headers: bool,
}

/// Erlang's rendering of a JSON value in RabbitMQ's messages (`<<"text">>`, 1, true).
fn erlang(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Keys RabbitMQ 3.10 accepts that coney does not act on: refused with this reason.
const NOT_SUPPORTED: &[&str] = &[
    "src-queue-args",
    "dest-queue-args",
    "src-consumer-args",
    "dest-publish-properties",
    "dest-add-timestamp-header",
    "src-address",
    "dest-address",
    "dest-application-properties",
    "dest-message-annotations",
    "dest-properties",
];

const KNOWN: &[&str] = &[
    "src-uri",
    "src-queue",
    "src-exchange",
    "src-exchange-key",
    "src-protocol",
    "src-prefetch-count",
    "src-delete-after",
    "dest-uri",
    "dest-queue",
    "dest-exchange",
    "dest-exchange-key",
    "dest-protocol",
    "dest-add-forward-headers",
    "ack-mode",
    "reconnect-delay",
    "delete-after",
    "prefetch-count",
];

/// Checks a shovel definition. `name` appears in RabbitMQ's texts ("Key ... not found in
/// NAME"). The error is RabbitMQ's list of lines, each ending in a newline.
pub fn parse_shovel(name: &str, value: &Value) -> Result<ShovelSpec, String> {
    let Some(obj) = value.as_object() else {
        return Err(format!("{} should be a JSON object\n", erlang(value)));
    };
    let mut errors: Vec<String> = Vec::new();
    let unknown: Vec<String> = obj
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()) && !NOT_SUPPORTED.contains(&k.as_str()))
        .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang(v)))
        .collect();
    if !unknown.is_empty() {
        errors.push(format!(
            "Unrecognised terms [{}] in {name}",
            unknown.join(",")
        ));
    }
    for (k, _) in obj
        .iter()
        .filter(|(k, _)| NOT_SUPPORTED.contains(&k.as_str()))
    {
        errors.push(format!("{k} is not supported by coney's shovel"));
    }
    for side in ["src", "dest"] {
        match obj.get(&format!("{side}-protocol")) {
            None => {}
            Some(Value::String(p)) if p == "amqp091" => {}
            Some(Value::String(p)) if p == "amqp10" => {
                errors.push(format!("{side}-protocol amqp10 is not supported by coney"))
            }
            Some(v) => errors.push(format!(
                "{side}-protocol should be one of [<<\"amqp10\">>,<<\"amqp091\">>], actually was {}",
                erlang(v)
            )),
        }
    }
    let string = |k: &str, errors: &mut Vec<String>| -> Option<String> {
        match obj.get(k) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                errors.push(format!("{k} should be binary, actually was {}", erlang(v)));
                None
            }
        }
    };
    let uri = |k: &str, errors: &mut Vec<String>| -> Option<String> {
        match obj.get(k) {
            None => {
                errors.push(format!("Key \"{k}\" not found in {name}"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().map(str::to_owned)
            }
            Some(Value::Array(_)) => {
                errors.push(format!("{k}: more than one URI is not supported by coney"));
                None
            }
            Some(v) => {
                errors.push(format!("{k} should be list, actually was {}", erlang(v)));
                None
            }
        }
    };
    let src_queue = string("src-queue", &mut errors);
    let src_exchange = string("src-exchange", &mut errors);
    let src_key = string("src-exchange-key", &mut errors);
    let dest_queue = string("dest-queue", &mut errors);
    let dest_exchange = string("dest-exchange", &mut errors);
    let dest_key = string("dest-exchange-key", &mut errors);
    let src_uri = uri("src-uri", &mut errors);
    let dest_uri = uri("dest-uri", &mut errors);
    for u in [&src_uri, &dest_uri].into_iter().flatten() {
        if let Err(e) = crate::client::uri::parse(u, "/") {
            errors.push(e);
        }
    }
    let source = match (src_queue, src_exchange) {
        (Some(_), Some(_)) => {
            errors.push("Cannot specify 'src-exchange' and 'src-queue'".into());
            None
        }
        // A key present with the wrong type was reported above, as RabbitMQ does.
        (None, None) if obj.contains_key("src-queue") || obj.contains_key("src-exchange") => None,
        (None, None) => {
            errors.insert(0, "Must specify 'src-exchange' or 'src-queue'".into());
            None
        }
        (Some(q), None) => Some(Source::Queue(q)),
        (None, Some(x)) => Some(Source::Exchange {
            exchange: x,
            key: src_key.unwrap_or_default(),
        }),
    };
    if dest_queue.is_some() && dest_exchange.is_some() {
        errors.push("Cannot specify 'dest-exchange' and 'dest-queue'".into());
    }
    let ack_mode = match obj.get("ack-mode") {
        None => AckMode::OnConfirm,
        Some(Value::String(s)) if s == "on-confirm" => AckMode::OnConfirm,
        Some(Value::String(s)) if s == "on-publish" => AckMode::OnPublish,
        Some(Value::String(s)) if s == "no-ack" => AckMode::NoAck,
        Some(v) => {
            errors.push(format!("ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was {}", erlang(v)));
            AckMode::OnConfirm
        }
    };
    let number = |k: &str, errors: &mut Vec<String>| -> Option<f64> {
        match obj.get(k) {
            None => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(v) => {
                errors.push(format!(
                    "{k} should be a number, actually was {}",
                    erlang(v)
                ));
                None
            }
        }
    };
    let prefetch =
        match number("src-prefetch-count", &mut errors).or(number("prefetch-count", &mut errors)) {
            None => 1000,
            // basic.qos takes a 16-bit count; RabbitMQ's client would fail on more, coney
            // refuses it here.
            Some(n) if (0.0..=65535.0).contains(&n) && n.fract() == 0.0 => n as u16,
            Some(n) => {
                errors.push(format!(
                    "src-prefetch-count should be an integer from 0 to 65535, actually was {n}"
                ));
                1000
            }
        };
    let reconnect_delay_secs = match number("reconnect-delay", &mut errors) {
        None => 1.0,
        Some(n) if n >= 0.0 => n,
        Some(n) => {
            errors.push(format!(
                "reconnect-delay should be a number greater than or equal to 0, actually was {n}"
            ));
            1.0
        }
    };
    let delete_after = obj
        .get("src-delete-after")
        .or(obj.get("delete-after"))
        .map_or(Ok(DeleteAfter::Never), |v| match v {
            Value::String(s) if s == "never" => Ok(DeleteAfter::Never),
            Value::String(s) if s == "queue-length" => Ok(DeleteAfter::QueueLength),
            Value::Number(n) if n.as_u64().is_some() => Ok(DeleteAfter::Count(n.as_u64().unwrap_or(0))),
            v => Err(format!("src-delete-after should be a number greater than or equal to 0, \"never\" or \"queue-length\", actually was {}", erlang(v))),
        })
        .unwrap_or_else(|e| {
            errors.push(e);
            DeleteAfter::Never
        });
    if delete_after == DeleteAfter::QueueLength && !matches!(source, Some(Source::Queue(_))) {
        errors.push("src-delete-after queue-length needs src-queue".into());
    }
    let add_forward_headers = match obj.get("dest-add-forward-headers") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            errors.push(format!(
                "dest-add-forward-headers should be boolean, actually was {}",
                erlang(v)
            ));
            false
        }
    };
    match (src_uri, dest_uri, source) {
        (Some(src_uri), Some(dest_uri), Some(source)) if errors.is_empty() => {
            let (dest_exchange, dest_key) = match (&dest_queue, dest_exchange) {
                (Some(q), _) => (Some(String::new()), Some(q.clone())),
                (None, x) => (x, dest_key),
            };
            Ok(ShovelSpec {
                src_uri,
                source,
                dest_uri,
                dest_exchange,
                dest_key,
                dest_queue,
                ack_mode,
                prefetch,
                reconnect_delay_secs,
                delete_after,
                add_forward_headers,
            })
        }
        _ => Err(errors.iter().map(|e| format!("{e}\n")).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse_shovel("s1", &v).expect_err("refused")
    }

    /// RabbitMQ 3.10's texts (observed through PUT /api/parameters/shovel on a real node).
    #[test]
    fn validation_texts_are_rabbitmqs() {
        assert_eq!(
            err(json!({"src-uri":"amqp://","dest-uri":"amqp://"})),
            "Must specify 'src-exchange' or 'src-queue'\n"
        );
        let e = err(json!({}));
        assert!(e.contains("Key \"src-uri\" not found in s1\n"), "{e}");
        assert!(e.contains("Key \"dest-uri\" not found in s1\n"), "{e}");
        assert_eq!(
            err(json!({"src-uri":"amqp://","src-queue":"a","dest-uri":"amqp://","bogus":1})),
            "Unrecognised terms [{<<\"bogus\">>,1}] in s1\n"
        );
        assert_eq!(
            err(
                json!({"src-uri":"amqp://","src-queue":"a","src-exchange":"x","dest-uri":"amqp://"})
            ),
            "Cannot specify 'src-exchange' and 'src-queue'\n"
        );
        assert_eq!(
            err(json!({"src-uri":"amqp://","src-queue":"a","dest-uri":"amqp://","ack-mode":"bad"})),
            "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"bad\">>\n"
        );
        assert_eq!(
            err(json!({"src-uri":"amqp://","src-queue":"a","dest-uri":"amqp://","src-delete-after":"x"})),
            "src-delete-after should be a number greater than or equal to 0, \"never\" or \"queue-length\", actually was <<\"x\">>\n"
        );
        assert_eq!(
            err(json!({"src-uri":5,"src-queue":"a","dest-uri":"amqp://","dest-queue":true})),
            "dest-queue should be binary, actually was true\nsrc-uri should be list, actually was 5\n"
        );
        assert!(err(json!({"src-uri":"amqp://","src-queue":"a","dest-uri":"amqp://","dest-protocol":"amqp10"})).contains("amqp10"));
    }

    /// Defaults and the destination forms.
    #[test]
    fn defaults_and_destinations() {
        let s = parse_shovel(
            "s",
            &json!({"src-uri":"amqp://","src-queue":"a","dest-uri":["amqp://h"],"dest-queue":"b"}),
        )
        .expect("valid");
        assert_eq!(s.ack_mode, AckMode::OnConfirm);
        assert_eq!(s.prefetch, 1000);
        assert_eq!(s.reconnect_delay_secs, 1.0);
        assert_eq!(s.delete_after, DeleteAfter::Never);
        assert_eq!(s.dest_exchange.as_deref(), Some(""));
        assert_eq!(s.dest_key.as_deref(), Some("b"));
        let s = parse_shovel(
            "s",
            &json!({"src-uri":"amqp://","src-exchange":"x","src-exchange-key":"k","dest-uri":"amqp://","src-delete-after":5}),
        )
        .expect("valid");
        assert_eq!(
            s.source,
            Source::Exchange {
                exchange: "x".into(),
                key: "k".into()
            }
        );
        assert_eq!((s.dest_exchange, s.dest_key), (None, None));
        assert_eq!(s.delete_after, DeleteAfter::Count(5));
    }
}
