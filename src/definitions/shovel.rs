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
pub(crate) fn erlang(v: &Value) -> String {
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

/// RabbitMQ's line for keys it does not know (`Unrecognised terms [...] in NAME`), None
/// when every key is `known`. Shared by the shovel and federation definitions.
pub(crate) fn unrecognised(
    name: &str,
    obj: &serde_json::Map<String, Value>,
    known: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let unknown: Vec<String> = obj
        .iter()
        .filter(|(k, _)| !known(k))
        .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang(v)))
        .collect();
    (!unknown.is_empty()).then(|| format!("Unrecognised terms [{}] in {name}", unknown.join(",")))
}

/// A binary (string) key, or RabbitMQ's line for another type.
pub(crate) fn binary(k: &str, v: Option<&Value>, errors: &mut Vec<String>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        v => {
            errors.push(format!("{k} should be binary, actually was {}", erlang(v)));
            None
        }
    }
}

/// `ack-mode` (on-confirm by default), or RabbitMQ's line for another value.
pub(crate) fn ack_mode(v: Option<&Value>, errors: &mut Vec<String>) -> AckMode {
    match v {
        None => AckMode::OnConfirm,
        Some(Value::String(s)) if s == "on-confirm" => AckMode::OnConfirm,
        Some(Value::String(s)) if s == "on-publish" => AckMode::OnPublish,
        Some(Value::String(s)) if s == "no-ack" => AckMode::NoAck,
        Some(v) => {
            errors.push(format!("ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was {}", erlang(v)));
            AckMode::OnConfirm
        }
    }
}

/// A definition being checked: its keys and RabbitMQ's validation lines so far.
struct Check<'a> {
    name: &'a str,
    obj: &'a serde_json::Map<String, Value>,
    errors: Vec<String>,
}

impl Check<'_> {
    /// Unknown keys, keys coney refuses by name, and the protocols.
    fn keys(&mut self) {
        let known = |k: &str| KNOWN.contains(&k) || NOT_SUPPORTED.contains(&k);
        self.errors
            .extend(unrecognised(self.name, self.obj, &known));
        for (k, _) in self
            .obj
            .iter()
            .filter(|(k, _)| NOT_SUPPORTED.contains(&k.as_str()))
        {
            self.errors
                .push(format!("{k} is not supported by coney's shovel"));
        }
        for side in ["src", "dest"] {
            match self.obj.get(&format!("{side}-protocol")) {
                None => {}
                Some(Value::String(p)) if p == "amqp091" => {}
                Some(Value::String(p)) if p == "amqp10" => self
                    .errors
                    .push(format!("{side}-protocol amqp10 is not supported by coney")),
                Some(v) => self.errors.push(format!(
                    "{side}-protocol should be one of [<<\"amqp10\">>,<<\"amqp091\">>], actually was {}",
                    erlang(v)
                )),
            }
        }
    }

    fn string(&mut self, k: &str) -> Option<String> {
        binary(k, self.obj.get(k), &mut self.errors)
    }

    /// A mandatory URI (a string or a list of one), parsed to check it.
    fn uri(&mut self, k: &str) -> Option<String> {
        let uri = match self.obj.get(k) {
            None => {
                let name = self.name;
                self.errors.push(format!("Key \"{k}\" not found in {name}"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().map(str::to_owned)
            }
            Some(Value::Array(_)) => {
                self.errors
                    .push(format!("{k}: more than one URI is not supported by coney"));
                None
            }
            Some(v) => {
                self.errors
                    .push(format!("{k} should be list, actually was {}", erlang(v)));
                None
            }
        };
        if let Some(Err(e)) = uri.as_deref().map(|u| crate::client::uri::parse(u, "/")) {
            self.errors.push(e);
        }
        uri
    }

    fn number(&mut self, k: &str) -> Option<f64> {
        match self.obj.get(k) {
            None => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(v) => {
                self.errors.push(format!(
                    "{k} should be a number, actually was {}",
                    erlang(v)
                ));
                None
            }
        }
    }

    fn source(&mut self) -> Option<Source> {
        let queue = self.string("src-queue");
        let exchange = self.string("src-exchange");
        let key = self.string("src-exchange-key");
        match (queue, exchange) {
            (Some(_), Some(_)) => {
                self.errors
                    .push("Cannot specify 'src-exchange' and 'src-queue'".into());
                None
            }
            // A key present with the wrong type was reported, as RabbitMQ does.
            (None, None)
                if self.obj.contains_key("src-queue") || self.obj.contains_key("src-exchange") =>
            {
                None
            }
            (None, None) => {
                self.errors
                    .insert(0, "Must specify 'src-exchange' or 'src-queue'".into());
                None
            }
            (Some(q), None) => Some(Source::Queue(q)),
            (None, Some(x)) => Some(Source::Exchange {
                exchange: x,
                key: key.unwrap_or_default(),
            }),
        }
    }

    fn ack_mode(&mut self) -> AckMode {
        ack_mode(self.obj.get("ack-mode"), &mut self.errors)
    }

    fn prefetch(&mut self) -> u16 {
        let n = self.number("src-prefetch-count");
        match n.or_else(|| self.number("prefetch-count")) {
            None => 1000,
            // basic.qos takes a 16-bit count; RabbitMQ's client would fail on more, coney
            // refuses it here.
            Some(n) if (0.0..=65535.0).contains(&n) && n.fract() == 0.0 => n as u16,
            Some(n) => {
                self.errors.push(format!(
                    "src-prefetch-count should be an integer from 0 to 65535, actually was {n}"
                ));
                1000
            }
        }
    }

    fn reconnect_delay(&mut self) -> f64 {
        match self.number("reconnect-delay") {
            None => 1.0,
            Some(n) if n >= 0.0 => n,
            Some(n) => {
                self.errors.push(format!(
                    "reconnect-delay should be a number greater than or equal to 0, actually was {n}"
                ));
                1.0
            }
        }
    }

    fn delete_after(&mut self, source: &Option<Source>) -> DeleteAfter {
        let v = self
            .obj
            .get("src-delete-after")
            .or(self.obj.get("delete-after"));
        let d = match v {
            None => DeleteAfter::Never,
            Some(Value::String(s)) if s == "never" => DeleteAfter::Never,
            Some(Value::String(s)) if s == "queue-length" => DeleteAfter::QueueLength,
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                DeleteAfter::Count(n.as_u64().unwrap_or(0))
            }
            Some(v) => {
                self.errors.push(format!("src-delete-after should be a number greater than or equal to 0, \"never\" or \"queue-length\", actually was {}", erlang(v)));
                DeleteAfter::Never
            }
        };
        if d == DeleteAfter::QueueLength && !matches!(source, Some(Source::Queue(_))) {
            self.errors
                .push("src-delete-after queue-length needs src-queue".into());
        }
        d
    }

    fn forward_headers(&mut self) -> bool {
        match self.obj.get("dest-add-forward-headers") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.errors.push(format!(
                    "dest-add-forward-headers should be boolean, actually was {}",
                    erlang(v)
                ));
                false
            }
        }
    }
}

/// Checks a shovel definition. `name` appears in RabbitMQ's texts ("Key ... not found in
/// NAME"). The error is RabbitMQ's list of lines, each ending in a newline.
pub fn parse_shovel(name: &str, value: &Value) -> Result<ShovelSpec, String> {
    let Some(obj) = value.as_object() else {
        return Err(format!("{} should be a JSON object\n", erlang(value)));
    };
    let mut c = Check {
        name,
        obj,
        errors: Vec::new(),
    };
    c.keys();
    let source = c.source();
    let dest_queue = c.string("dest-queue");
    let dest_exchange = c.string("dest-exchange");
    let dest_key = c.string("dest-exchange-key");
    let src_uri = c.uri("src-uri");
    let dest_uri = c.uri("dest-uri");
    if dest_queue.is_some() && dest_exchange.is_some() {
        c.errors
            .push("Cannot specify 'dest-exchange' and 'dest-queue'".into());
    }
    let ack_mode = c.ack_mode();
    let prefetch = c.prefetch();
    let reconnect_delay_secs = c.reconnect_delay();
    let delete_after = c.delete_after(&source);
    let add_forward_headers = c.forward_headers();
    match (src_uri, dest_uri, source) {
        (Some(src_uri), Some(dest_uri), Some(source)) if c.errors.is_empty() => {
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
        _ => Err(c.errors.iter().map(|e| format!("{e}\n")).collect()),
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
