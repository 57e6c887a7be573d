//! The `federation-upstream` and `federation-upstream-set` runtime parameters (RabbitMQ's
//! federation plugin's definitions) checked as RabbitMQ 3.10 checks them, into an
//! `UpstreamSpec`; and the policy keys that federate an exchange. Pure: JSON in, a spec or
//! RabbitMQ's validation lines out. Keys coney does not act on are refused by name.

use super::shovel::{ack_mode, binary, erlang, unrecognised, AckMode};
use serde_json::{Map, Value};

pub const UPSTREAM_COMPONENT: &str = "federation-upstream";
pub const UPSTREAM_SET_COMPONENT: &str = "federation-upstream-set";

/// Keys RabbitMQ 3.10 accepts in an upstream that coney refuses: `ha-policy` asks for a
/// classic mirrored upstream queue (`x-ha-policy`), which RabbitMQ 3.x no longer honours
/// as an argument either.
const NOT_SUPPORTED: &[&str] = &["ha-policy"];

/// Keys of an upstream (and of an upstream set's entries, which may override any of them).
const KNOWN: &[&str] = &[
    "uri",
    "exchange",
    "max-hops",
    "prefetch-count",
    "reconnect-delay",
    "ack-mode",
    "expires",
    "message-ttl",
    "trust-user-id",
    "resource-cleanup-mode",
    // Queue federation's keys: checked, and without effect on exchanges (federated queues
    // are refused by the policy check).
    "queue",
    "consumer-tag",
    // How RabbitMQ's link waits for bind-ok and uses its channels: no effect coney's link
    // could show (it pipelines its binds on one channel).
    "bind-nowait",
    "channel-use-mode",
];

/// One upstream, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    /// Tried in order, one per attempt.
    pub uris: Vec<String>,
    /// The upstream exchange; None: the federated exchange's own name.
    pub exchange: Option<String>,
    pub max_hops: u32,
    pub prefetch: u16,
    pub reconnect_delay_secs: f64,
    pub ack_mode: AckMode,
    /// x-expires of the upstream queue.
    pub expires_ms: Option<u64>,
    /// x-message-ttl of the upstream queue.
    pub message_ttl_ms: Option<u64>,
    /// Keep the messages' user-id (else cleared, as RabbitMQ's link does).
    pub trust_user_id: bool,
    /// resource-cleanup-mode `never`: the upstream queue is not deleted with the link.
    pub keep_upstream_queue: bool,
}

/// Which upstreams a policy federates an exchange from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederationTarget {
    /// `federation-upstream-set`: "all" upstreams of the vhost, or a set's.
    Set(String),
    /// `federation-upstream`: one upstream.
    Upstream(String),
}

struct Check<'a> {
    name: &'a str,
    obj: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl Check<'_> {
    fn keys(&mut self, extra: &[&str]) {
        let known =
            |k: &str| KNOWN.contains(&k) || NOT_SUPPORTED.contains(&k) || extra.contains(&k);
        self.errors
            .extend(unrecognised(self.name, self.obj, &known));
        for k in self
            .obj
            .keys()
            .filter(|k| NOT_SUPPORTED.contains(&k.as_str()))
        {
            self.errors
                .push(format!("{k} is not supported by coney's federation"));
        }
    }

    fn string(&mut self, k: &str) -> Option<String> {
        binary(k, self.obj.get(k), &mut self.errors)
    }

    fn boolean(&mut self, k: &str) -> Option<bool> {
        match self.obj.get(k)? {
            Value::Bool(b) => Some(*b),
            v => {
                self.errors
                    .push(format!("{k} should be boolean, actually was {}", erlang(v)));
                None
            }
        }
    }

    /// A number RabbitMQ takes as any number; coney needs a whole one in `range`.
    fn whole(&mut self, k: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.obj.get(k)?;
        if !v.is_number() {
            self.errors.push(format!(
                "{k} should be a number, actually was {}",
                erlang(v)
            ));
            return None;
        }
        match v.as_u64().filter(|n| (min..=max).contains(n)) {
            Some(n) => Some(n),
            None => {
                self.errors.push(format!(
                    "{k} should be an integer from {min} to {max} in coney, actually was {v}"
                ));
                None
            }
        }
    }

    fn uris(&mut self, mandatory: bool) -> Vec<String> {
        let list = match self.obj.get("uri") {
            None if mandatory => {
                let name = self.name;
                self.errors.push(format!("Key \"uri\" not found in {name}"));
                return Vec::new();
            }
            None => return Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
            Some(v) => {
                self.errors
                    .push(format!("uri should be list, actually was {}", erlang(v)));
                return Vec::new();
            }
        };
        if list.is_empty() {
            self.errors
                .push("uri should name at least one URI (coney)".into());
        }
        for u in &list {
            if let Err(e) = crate::client::uri::parse(u, "/") {
                self.errors.push(e);
            }
        }
        list
    }

    fn reconnect_delay(&mut self) -> f64 {
        match self.obj.get("reconnect-delay") {
            None => 5.0,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|d| d >= 0.0) => {
                n.as_f64().unwrap_or(5.0)
            }
            Some(v) if v.is_number() => {
                self.errors.push(format!(
                    "reconnect-delay should be a number greater than or equal to 0 in coney, actually was {v}"
                ));
                5.0
            }
            Some(v) => {
                self.errors.push(format!(
                    "reconnect-delay should be a number, actually was {}",
                    erlang(v)
                ));
                5.0
            }
        }
    }

    fn cleanup_mode(&mut self) -> bool {
        match self.obj.get("resource-cleanup-mode") {
            None => false,
            Some(Value::String(s)) if s == "default" => false,
            Some(Value::String(s)) if s == "never" => true,
            Some(v) => {
                self.errors.push(format!(
                    "resource-cleanup-mode should be one of [<<\"default\">>,<<\"never\">>], actually was {}",
                    erlang(v)
                ));
                false
            }
        }
    }

    fn channel_use_mode(&mut self) {
        match self.obj.get("channel-use-mode") {
            None => {}
            Some(Value::String(s)) if s == "multiple" || s == "single" => {}
            Some(v) => self.errors.push(format!(
                "channel-use-mode should be one of [<<\"multiple\">>,<<\"single\">>], actually was {}",
                erlang(v)
            )),
        }
    }

    /// Every key but `uri` (checked by the caller), in RabbitMQ's order of its messages.
    fn spec(&mut self, uris: Vec<String>) -> UpstreamSpec {
        let ack_mode = ack_mode(self.obj.get("ack-mode"), &mut self.errors);
        let trust_user_id = self.boolean("trust-user-id").unwrap_or(false);
        self.boolean("bind-nowait");
        self.channel_use_mode();
        let keep_upstream_queue = self.cleanup_mode();
        let expires_ms = self.whole("expires", 1, u32::MAX as u64);
        let message_ttl_ms = self.whole("message-ttl", 0, u32::MAX as u64);
        let max_hops = self.whole("max-hops", 1, u32::MAX as u64).unwrap_or(1) as u32;
        let reconnect_delay_secs = self.reconnect_delay();
        let prefetch = self.whole("prefetch-count", 0, 65535).unwrap_or(1000) as u16;
        self.string("queue");
        self.string("consumer-tag");
        let exchange = self.string("exchange");
        UpstreamSpec {
            uris,
            exchange,
            max_hops,
            prefetch,
            reconnect_delay_secs,
            ack_mode,
            expires_ms,
            message_ttl_ms,
            trust_user_id,
            keep_upstream_queue,
        }
    }

    fn result<T>(self, ok: T) -> Result<T, String> {
        if self.errors.is_empty() {
            Ok(ok)
        } else {
            Err(self.errors.iter().map(|e| format!("{e}\n")).collect())
        }
    }
}

/// Checks a `federation-upstream` value. The error is RabbitMQ's list of lines, each ending
/// in a newline.
pub fn parse_upstream(name: &str, value: &Value) -> Result<UpstreamSpec, String> {
    let Some(obj) = value.as_object() else {
        return Err(format!("{} should be a JSON object\n", erlang(value)));
    };
    let mut c = Check {
        name,
        obj,
        errors: Vec::new(),
    };
    c.keys(&[]);
    let uris = c.uris(true);
    let spec = c.spec(uris);
    c.result(spec)
}

/// One entry of an upstream set: the upstream's name and the keys it overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct SetEntry {
    pub upstream: String,
    pub overrides: Map<String, Value>,
}

/// Checks a `federation-upstream-set` value: a list of `{"upstream": NAME, overrides...}`.
pub fn parse_upstream_set(name: &str, value: &Value) -> Result<Vec<SetEntry>, String> {
    let Some(list) = value.as_array() else {
        return Err(format!("{} should be a JSON list\n", erlang(value)));
    };
    let mut entries = Vec::new();
    let mut errors = String::new();
    for v in list {
        let Some(obj) = v.as_object() else {
            errors.push_str(&format!("{} should be a JSON object\n", erlang(v)));
            continue;
        };
        let mut c = Check {
            name,
            obj,
            errors: Vec::new(),
        };
        c.keys(&["upstream"]);
        let upstream = match obj.get("upstream") {
            None => {
                c.errors
                    .push(format!("Key \"upstream\" not found in {name}"));
                None
            }
            Some(_) => c.string("upstream"),
        };
        c.uris(false);
        c.spec(Vec::new());
        let mut overrides = obj.clone();
        overrides.remove("upstream");
        match c.result(()) {
            Ok(()) => entries.extend(upstream.map(|upstream| SetEntry {
                upstream,
                overrides,
            })),
            Err(e) => errors.push_str(&e),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// An upstream's value with a set entry's overrides, checked.
pub fn with_overrides(
    name: &str,
    upstream: &Value,
    overrides: &Map<String, Value>,
) -> Result<UpstreamSpec, String> {
    let mut merged = upstream.as_object().cloned().unwrap_or_default();
    for (k, v) in overrides {
        merged.insert(k.clone(), v.clone());
    }
    parse_upstream(name, &Value::Object(merged))
}

/// The federation keys of a policy definition: None when it has none. The error is the
/// policy's validation line (RabbitMQ's texts; federated queues are coney's refusal).
pub fn policy_target(
    definition: &Map<String, Value>,
    applies_to_queues: bool,
) -> Result<Option<FederationTarget>, String> {
    let set = definition.get("federation-upstream-set");
    let one = definition.get("federation-upstream");
    let pattern = definition.get("federation-upstream-pattern");
    let given = [set, one, pattern].iter().filter(|v| v.is_some()).count();
    if given > 1 {
        return Err(
            "cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together"
                .into(),
        );
    }
    if given == 0 {
        return Ok(None);
    }
    if applies_to_queues {
        return Err("federated queues are not implemented by coney: give federation-upstream or federation-upstream-set to a policy with apply-to \"exchanges\"".into());
    }
    let text = |k: &str, v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        v => Err(format!("{} is not a valid {k}", erlang(v))),
    };
    match (set, one, pattern) {
        (Some(v), _, _) => Ok(Some(FederationTarget::Set(text(
            "federation upstream set name",
            v,
        )?))),
        (_, Some(v), _) => Ok(Some(FederationTarget::Upstream(text(
            "federation upstream name",
            v,
        )?))),
        (_, _, Some(_)) => Err("federation-upstream-pattern is not supported by coney".into()),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse_upstream("u", &v).expect_err("refused")
    }

    /// RabbitMQ 3.10.8's texts, observed through PUT /api/parameters/federation-upstream.
    #[test]
    fn upstream_validation_texts_are_rabbitmqs() {
        assert_eq!(err(json!({})), "Key \"uri\" not found in u\n");
        assert_eq!(
            err(json!({"uri": 5})),
            "uri should be list, actually was 5\n"
        );
        assert_eq!(
            err(json!({"uri": "foo://x"})),
            "\"foo://x\" not a valid URI: {{unexpected_uri_scheme,\"foo\"},\"foo://x\"}\n"
        );
        let e = err(
            json!({"uri":"amqp://x","max-hops":"a","reconnect-delay":"x","ack-mode":"bad",
            "expires":"x","trust-user-id":"x","exchange":5,"queue":5,"bogus":1}),
        );
        for line in [
            "Unrecognised terms [{<<\"bogus\">>,1}] in u\n",
            "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"bad\">>\n",
            "trust-user-id should be boolean, actually was <<\"x\">>\n",
            "expires should be a number, actually was <<\"x\">>\n",
            "max-hops should be a number, actually was <<\"a\">>\n",
            "reconnect-delay should be a number, actually was <<\"x\">>\n",
            "queue should be binary, actually was 5\n",
            "exchange should be binary, actually was 5\n",
        ] {
            assert!(e.contains(line), "{line} in {e}");
        }
    }

    /// What RabbitMQ takes and coney cannot act on is refused, by name.
    #[test]
    fn values_coney_cannot_act_on_are_refused() {
        for (k, v) in [
            ("max-hops", json!(0)),
            ("max-hops", json!(1.5)),
            ("prefetch-count", json!(-1)),
            ("prefetch-count", json!(70000)),
            ("message-ttl", json!(-3)),
            ("expires", json!(0)),
            ("reconnect-delay", json!(-1)),
        ] {
            let e = err(json!({"uri": "amqp://h", k: v}));
            assert!(e.starts_with(k) && e.contains("coney"), "{k}: {e}");
        }
        assert!(err(json!({"uri": []})).contains("at least one"));
        assert!(err(json!({"uri": "amqp://h", "ha-policy": "all"}))
            .contains("ha-policy is not supported"));
        assert!(
            err(json!({"uri": "amqp://h", "resource-cleanup-mode": "x"}))
                .starts_with("resource-cleanup-mode should be one of")
        );
    }

    /// Defaults are RabbitMQ's; a list of URIs is kept in order.
    #[test]
    fn defaults_and_uri_lists() {
        let s = parse_upstream("u", &json!({"uri": ["amqp://a", "amqp://b"]})).expect("valid");
        assert_eq!(s.uris, ["amqp://a", "amqp://b"]);
        assert_eq!(s.exchange, None);
        assert_eq!(
            (s.max_hops, s.prefetch, s.reconnect_delay_secs),
            (1, 1000, 5.0)
        );
        assert_eq!(s.ack_mode, AckMode::OnConfirm);
        assert_eq!(
            (s.expires_ms, s.message_ttl_ms, s.trust_user_id),
            (None, None, false)
        );
        let s = parse_upstream(
            "u",
            &json!({"uri": "amqp://a", "exchange": "x", "max-hops": 3, "expires": 60000,
                "message-ttl": 0, "ack-mode": "no-ack", "trust-user-id": true, "queue": "q",
                "bind-nowait": true, "channel-use-mode": "single"}),
        )
        .expect("valid");
        assert_eq!(s.exchange.as_deref(), Some("x"));
        assert_eq!(
            (s.max_hops, s.expires_ms, s.message_ttl_ms),
            (3, Some(60000), Some(0))
        );
        assert_eq!(s.ack_mode, AckMode::NoAck);
        assert!(s.trust_user_id);
    }

    /// Sets: RabbitMQ's texts, and overrides replace the upstream's keys.
    #[test]
    fn upstream_sets() {
        assert_eq!(
            parse_upstream_set("s", &json!([{}])).expect_err("refused"),
            "Key \"upstream\" not found in s\n"
        );
        assert_eq!(
            parse_upstream_set("s", &json!([{"upstream": 5, "bogus": 1}])).expect_err("refused"),
            "Unrecognised terms [{<<\"bogus\">>,1}] in s\nupstream should be binary, actually was 5\n"
        );
        assert_eq!(parse_upstream_set("s", &json!([])), Ok(vec![]));
        let set =
            parse_upstream_set("s", &json!([{"upstream": "u1", "max-hops": 2}])).expect("valid");
        assert_eq!(set[0].upstream, "u1");
        let s = with_overrides(
            "u1",
            &json!({"uri": "amqp://a", "max-hops": 5}),
            &set[0].overrides,
        )
        .expect("valid");
        assert_eq!(s.max_hops, 2);
    }

    /// The policy keys: RabbitMQ's "together" text; queues refused by coney.
    #[test]
    fn policy_keys() {
        let d = |v: Value| v.as_object().cloned().expect("object");
        assert_eq!(
            policy_target(&d(json!({"federation-upstream": "u", "federation-upstream-set": "all"})), false),
            Err("cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together".into())
        );
        assert_eq!(
            policy_target(&d(json!({"federation-upstream-set": "all"})), false),
            Ok(Some(FederationTarget::Set("all".into())))
        );
        assert_eq!(
            policy_target(&d(json!({"federation-upstream": "u"})), false),
            Ok(Some(FederationTarget::Upstream("u".into())))
        );
        assert!(policy_target(&d(json!({"federation-upstream": "u"})), true)
            .expect_err("queues")
            .contains("federated queues are not implemented"));
        assert_eq!(policy_target(&d(json!({"max-length": 1})), true), Ok(None));
    }
}
