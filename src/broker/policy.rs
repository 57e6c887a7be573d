//! One policy (RabbitMQ's `set_policy`): its JSON as the API and definitions carry it, checked
//! with RabbitMQ 3.10's validation texts, and what its definition does to a queue's or an
//! exchange's arguments (`merge_queue_args`, `alternate_exchange`) with RabbitMQ's precedence.
//! Pure: the broker's table of policies and their application are in `policies.rs`.
//!
//! Definition keys coney acts on: message-ttl, expires, max-length, max-length-bytes, overflow,
//! dead-letter-exchange, dead-letter-routing-key, delivery-limit (quorum queues), queue-mode,
//! alternate-exchange (exchanges). Keys RabbitMQ 3.10 recognises but coney cannot act on
//! (mirroring, locators, streams, in-memory limits, queue-version, dead-letter-strategy) are
//! refused, never accepted and ignored; keys RabbitMQ does not recognise get its refusal.

use super::args::{Overflow, QueueArgs};
use crate::auth::pattern::PermissionPattern;
use serde_json::{Map, Value};
use std::fmt::Write;

/// Which objects a policy applies to (RabbitMQ 3.10's three values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
}

impl ApplyTo {
    pub fn name(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }

    fn parse(s: &str) -> Option<ApplyTo> {
        match s {
            "queues" => Some(ApplyTo::Queues),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }
}

/// What kind of object a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Queue,
    Exchange,
}

/// A policy definition's keys, typed once when the policy is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDefinition {
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub(crate) overflow: Option<Overflow>,
    pub dead_letter_exchange: Option<Box<[u8]>>,
    pub dead_letter_routing_key: Option<Box<[u8]>>,
    pub delivery_limit: Option<i64>,
    pub alternate_exchange: Option<Box<[u8]>>,
    /// queue-mode: Some(true) for lazy, Some(false) for default.
    pub lazy: Option<bool>,
    /// federation-upstream or federation-upstream-set (exchanges only).
    pub federation: Option<crate::definitions::federation::FederationTarget>,
}

/// A policy as set: its JSON definition kept as given (listings and export show it).
#[derive(Debug, Clone)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    regex: PermissionPattern,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Map<String, Value>,
    pub parsed: PolicyDefinition,
}

/// Definition keys RabbitMQ 3.10 (core, mirroring and stream validators) recognises that
/// coney refuses: each places replicas, tunes a storage coney does not have, or selects a
/// behaviour coney has only one of.
const RECOGNISED_NOT_SUPPORTED: [&str; 15] = [
    "dead-letter-strategy",
    "ha-mode",
    "ha-params",
    "ha-promote-on-failure",
    "ha-promote-on-shutdown",
    "ha-sync-batch-size",
    "ha-sync-mode",
    "initial-cluster-size",
    "max-age",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "queue-leader-locator",
    "queue-master-locator",
    "queue-version",
    "stream-max-segment-size-bytes",
];

/// Why a PUT of a policy was refused: the 400's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl Policy {
    /// Checks a policy body as RabbitMQ 3.10's management API does: missing keys first
    /// (`[{key_missing,pattern}]`), then every validation failure, one line each, sorted, in
    /// its "Validation failed" text (with `<` and `>` as the API escapes them).
    pub fn from_json(vhost: &str, name: &str, body: &Value) -> Result<Policy, PolicyError> {
        let missing: Vec<&str> = ["pattern", "definition"]
            .into_iter()
            .filter(|k| body.get(k).is_none())
            .collect();
        if !missing.is_empty() {
            let terms: Vec<String> = missing
                .iter()
                .map(|k| format!("{{key_missing,{k}}}"))
                .collect();
            return Err(PolicyError(format!("[{}]", terms.join(","))));
        }
        let mut errors = Vec::new();
        let priority = match body.get("priority") {
            None => Some(0),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(p) => Some(p),
                None => {
                    errors.push(format!(
                        "priority {} is not a whole number (coney orders policies by integer priority)",
                        term(&body["priority"])
                    ));
                    None
                }
            },
            Some(v) => {
                errors.push(format!(
                    "priority should be a number, actually was {}",
                    term(v)
                ));
                None
            }
        };
        let pattern = match &body["pattern"] {
            Value::String(s) => {
                let compiled = if s.is_empty() {
                    Ok(PermissionPattern::everything())
                } else {
                    PermissionPattern::new(s)
                };
                match compiled {
                    Ok(r) => Some((s.clone(), r)),
                    Err(e) => {
                        errors.push(format!(
                            "pattern should be regular expression but is invalid: {e}"
                        ));
                        None
                    }
                }
            }
            v => {
                errors.push(format!("pattern should be a binary but was {}", term(v)));
                None
            }
        };
        let apply_to = match body.get("apply-to") {
            None => Some(ApplyTo::All),
            Some(Value::String(s)) => ApplyTo::parse(s).or_else(|| {
                errors.push(format!(
                    "apply-to '{s}' unrecognised; should be 'queues', 'exchanges' or 'all'"
                ));
                None
            }),
            Some(v) => {
                errors.push(format!(
                    "apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'",
                    term(v)
                ));
                None
            }
        };
        let definition = match &body["definition"] {
            Value::Object(m) => match parse_definition(m).and_then(|mut d| {
                // Federated queues are refused; with an unknown apply-to (reported above)
                // the keys are checked as for exchanges.
                let queues = apply_to.is_some_and(|a| a != ApplyTo::Exchanges);
                d.federation = crate::definitions::federation::policy_target(m, queues)?;
                Ok(d)
            }) {
                Ok(d) => Some((m.clone(), d)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            v => {
                errors.push(format!(
                    "definition should be a JSON object but was {}",
                    term(v)
                ));
                None
            }
        };
        match (priority, pattern, apply_to, definition) {
            (
                Some(priority),
                Some((pattern, regex)),
                Some(apply_to),
                Some((definition, parsed)),
            ) if errors.is_empty() => Ok(Policy {
                vhost: vhost.to_owned(),
                name: name.to_owned(),
                pattern,
                regex,
                apply_to,
                priority,
                definition,
                parsed,
            }),
            _ => {
                errors.sort();
                let mut reason = String::from("Validation failed\n\n");
                for e in errors {
                    reason.push_str(&e);
                    reason.push('\n');
                }
                Err(PolicyError(escape_html(&reason)))
            }
        }
    }

    /// The policy as the API and definitions show it (RabbitMQ's key order).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("vhost".into(), Value::from(self.vhost.clone()));
        m.insert("name".into(), Value::from(self.name.clone()));
        m.insert("pattern".into(), Value::from(self.pattern.clone()));
        m.insert("apply-to".into(), Value::from(self.apply_to.name()));
        m.insert("definition".into(), Value::Object(self.definition.clone()));
        m.insert("priority".into(), Value::from(self.priority));
        Value::Object(m)
    }

    /// Whether the policy applies to an object of this kind and name (RabbitMQ matches the
    /// pattern anywhere in the name).
    pub fn matches(&self, target: Target, name: &[u8]) -> bool {
        let kind = match (self.apply_to, target) {
            (ApplyTo::All, _) => true,
            (ApplyTo::Queues, Target::Queue) | (ApplyTo::Exchanges, Target::Exchange) => true,
            _ => false,
        };
        kind && self.regex.is_match(name)
    }
}

/// The policy that applies among `candidates`: the highest priority; among equals, the
/// first name in byte order (RabbitMQ leaves that order to its parameter table; coney makes
/// it stable).
pub fn best<'a>(
    candidates: impl Iterator<Item = &'a std::rc::Rc<Policy>>,
    target: Target,
    name: &[u8],
) -> Option<&'a std::rc::Rc<Policy>> {
    candidates.filter(|p| p.matches(target, name)).fold(
        None,
        |best: Option<&std::rc::Rc<Policy>>, p| match best {
            Some(b)
                if (b.priority, std::cmp::Reverse(&b.name))
                    >= (p.priority, std::cmp::Reverse(&p.name)) =>
            {
                Some(b)
            }
            _ => Some(p),
        },
    )
}

/// The definition's keys typed, in sorted key order: the first invalid value is the error;
/// then keys RabbitMQ does not recognise; then keys coney refuses.
fn parse_definition(m: &Map<String, Value>) -> Result<PolicyDefinition, String> {
    if m.is_empty() {
        return Err("no policy provided".to_owned());
    }
    let mut d = PolicyDefinition::default();
    let mut unknown = Vec::new();
    let mut unsupported = Vec::new();
    for (k, v) in m {
        let bad = |what: &str| format!("{} is not a valid {what}", term(v));
        let non_negative = |what: &str| v.as_u64().ok_or_else(|| bad(what));
        let binary = |what: &str| match v {
            Value::String(s) => Ok(Some(Box::<[u8]>::from(s.as_bytes()))),
            _ => Err(bad(what)),
        };
        match k.as_str() {
            "message-ttl" => d.message_ttl_ms = Some(non_negative("message TTL")?),
            "expires" => {
                d.expires_ms = Some(
                    v.as_u64()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad("queue expiry"))?,
                )
            }
            "max-length" => d.max_length = Some(non_negative("maximum length")?),
            "max-length-bytes" => {
                d.max_length_bytes = Some(non_negative("maximum length in bytes")?)
            }
            "delivery-limit" => {
                d.delivery_limit = Some(non_negative("delivery limit")?.min(i64::MAX as u64) as i64)
            }
            "dead-letter-exchange" => d.dead_letter_exchange = binary("dead letter exchange name")?,
            "dead-letter-routing-key" => {
                d.dead_letter_routing_key = binary("dead letter routing key")?
            }
            "alternate-exchange" => d.alternate_exchange = binary("alternate exchange name")?,
            "overflow" => {
                d.overflow = Some(match v.as_str() {
                    Some("drop-head") => Overflow::DropHead,
                    Some("reject-publish") => Overflow::RejectPublish,
                    Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                    _ => return Err(bad("overflow value")),
                })
            }
            "queue-mode" => {
                d.lazy = Some(match v.as_str() {
                    Some("lazy") => true,
                    Some("default") => false,
                    _ => return Err(bad("queue-mode value")),
                })
            }
            // Checked with the apply-to by `federation::policy_target`.
            "federation-upstream" | "federation-upstream-set" | "federation-upstream-pattern" => {}
            other if RECOGNISED_NOT_SUPPORTED.contains(&other) => {
                unsupported.push(format!("{{{},{}}}", term(&Value::from(other)), term(v)))
            }
            other => unknown.push(format!("{{{},{}}}", term(&Value::from(other)), term(v))),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        ));
    }
    if !unsupported.is_empty() {
        return Err(format!(
            "[{}] are policy settings coney does not support (see README: policies)",
            unsupported.join(",")
        ));
    }
    Ok(d)
}

/// `declared` (a queue's own x-arguments) with a policy's definition, as RabbitMQ 3.10's
/// queues resolve the two: for expires, message-ttl, max-length, max-length-bytes and
/// delivery-limit the lower value wins when both are set; for dead-letter-exchange,
/// dead-letter-routing-key, overflow and queue-mode the argument wins.  The two flags say
/// whether the queue's own arguments name x-queue-mode and x-overflow.
pub(crate) fn merge_queue_args(
    declared: &QueueArgs,
    queue_mode_declared: bool,
    overflow_declared: bool,
    def: Option<&PolicyDefinition>,
) -> QueueArgs {
    let mut a = declared.clone();
    let Some(d) = def else {
        return a;
    };
    let min = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    a.message_ttl_ms = min(declared.message_ttl_ms, d.message_ttl_ms);
    a.expires_ms = min(declared.expires_ms, d.expires_ms);
    a.max_length = min(declared.max_length, d.max_length);
    a.max_length_bytes = min(declared.max_length_bytes, d.max_length_bytes);
    if declared.queue_type == super::args::QueueType::Quorum {
        a.delivery_limit = match (declared.delivery_limit, d.delivery_limit) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    if declared.dead_letter_exchange.is_none() {
        a.dead_letter_exchange = d.dead_letter_exchange.clone();
    }
    if declared.dead_letter_routing_key.is_none() {
        a.dead_letter_routing_key = d.dead_letter_routing_key.clone();
    }
    if !overflow_declared {
        if let Some(o) = d.overflow {
            a.overflow = o;
        }
    }
    if !queue_mode_declared && d.lazy == Some(true) {
        a.in_memory_max = Some(0);
    }
    a
}

/// A JSON value as Erlang's `~p` prints the term RabbitMQ decoded it to: strings as
/// binaries (`<<"x">>`), objects as proplists.
fn term(v: &Value) -> String {
    let mut out = String::new();
    write_term(&mut out, v);
    out
}

fn write_term(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").unwrap_or(()),
            (_, Some(u), _) => write!(out, "{u}").unwrap_or(()),
            (_, _, Some(f)) => out.push_str(&erlang_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => {
            out.push_str("<<\"");
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str("\">>");
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_term(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('[');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                write_term(out, &Value::from(k.as_str()));
                out.push(',');
                write_term(out, x);
                out.push('}');
            }
            out.push(']');
        }
    }
}

/// A float as Erlang's shortest form prints it: `1.5`, `100.0`, and from 1000 on with an
/// exponent (`1.0e3`).
fn erlang_float(f: f64) -> String {
    if f != 0.0 && (f.abs() >= 1e3 || f.abs() < 1e-3) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
            _ => s,
        }
    } else if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// RabbitMQ's API escapes `<`, `>` and `&` in a validation reason.
fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: Value) -> String {
        Policy::from_json("/", "p", &body).expect_err("refused").0
    }

    /// Texts recorded from RabbitMQ 3.10.8's PUT /api/policies/%2F/p2.
    #[test]
    fn validation_texts_are_rabbitmqs() {
        assert_eq!(
            refused(json!({})),
            "[{key_missing,pattern},{key_missing,definition}]"
        );
        assert_eq!(
            refused(json!({"pattern": "a"})),
            "[{key_missing,definition}]"
        );
        assert_eq!(
            refused(json!({"pattern": "a", "definition": {"max-priority": 5}})),
            "Validation failed\n\n[{&lt;&lt;\"max-priority\"&gt;&gt;,5}] are not recognised policy settings\n"
        );
        assert_eq!(
            refused(json!({"pattern": "a", "definition": {"max-length": 1e3}})),
            "Validation failed\n\n1.0e3 is not a valid maximum length\n"
        );
        assert_eq!(
            refused(
                json!({"pattern": "a", "definition": {"max-length": 1, "message-ttl": "z", "expires": -4}})
            ),
            "Validation failed\n\n-4 is not a valid queue expiry\n"
        );
        assert_eq!(
            refused(json!({"pattern": "a", "definition": {"max-length": -1}, "apply-to": "x", "priority": "y"})),
            "Validation failed\n\n-1 is not a valid maximum length\napply-to 'x' unrecognised; should be 'queues', 'exchanges' or 'all'\npriority should be a number, actually was &lt;&lt;\"y\"&gt;&gt;\n"
        );
        assert_eq!(
            refused(json!({"pattern": "a", "definition": {}})),
            "Validation failed\n\nno policy provided\n"
        );
        assert_eq!(
            refused(json!({"pattern": 5, "definition": {"max-length": 1}})),
            "Validation failed\n\npattern should be a binary but was 5\n"
        );
        assert_eq!(
            refused(json!({"pattern": "a", "definition": {"overflow": "bogus"}})),
            "Validation failed\n\n&lt;&lt;\"bogus\"&gt;&gt; is not a valid overflow value\n"
        );
        assert!(
            refused(json!({"pattern": "a", "definition": {"ha-mode": "all"}}))
                .contains("coney does not support")
        );
    }

    /// Federation keys federate exchanges; a policy that would federate queues is refused
    /// (RabbitMQ's text for two keys together, coney's for queues).
    #[test]
    fn federation_keys_are_for_exchanges_only() {
        let p = Policy::from_json(
            "/",
            "p",
            &json!({"pattern": "^x", "apply-to": "exchanges", "definition": {"federation-upstream-set": "all"}}),
        )
        .expect("exchanges");
        assert_eq!(
            p.parsed.federation,
            Some(crate::definitions::federation::FederationTarget::Set(
                "all".into()
            ))
        );
        for apply_to in ["queues", "all"] {
            let e = refused(
                json!({"pattern": "^x", "apply-to": apply_to, "definition": {"federation-upstream": "u"}}),
            );
            assert!(e.contains("federated queues are not implemented"), "{e}");
        }
        assert!(
            refused(json!({"pattern": "^x", "definition": {"federation-upstream": "u"}}))
                .contains("federated queues are not implemented"),
            "apply-to defaults to all"
        );
        assert_eq!(
            refused(json!({"pattern": "^x", "apply-to": "exchanges",
                "definition": {"federation-upstream": "u", "federation-upstream-set": "all"}})),
            "Validation failed\n\ncannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together\n"
        );
    }

    /// The lower of argument and policy wins for numeric limits; the argument wins for
    /// dead-lettering and overflow.
    #[test]
    fn precedence_is_rabbitmqs() {
        let declared = QueueArgs {
            max_length: Some(3),
            message_ttl_ms: Some(1000),
            dead_letter_exchange: Some(b"arg".as_slice().into()),
            ..QueueArgs::default()
        };
        let def = PolicyDefinition {
            max_length: Some(5),
            message_ttl_ms: Some(10),
            expires_ms: Some(60_000),
            dead_letter_exchange: Some(b"pol".as_slice().into()),
            dead_letter_routing_key: Some(b"rk".as_slice().into()),
            overflow: Some(Overflow::RejectPublish),
            ..PolicyDefinition::default()
        };
        let a = merge_queue_args(&declared, false, true, Some(&def));
        assert_eq!(a.max_length, Some(3));
        assert_eq!(a.message_ttl_ms, Some(10));
        assert_eq!(a.expires_ms, Some(60_000));
        assert_eq!(a.dead_letter_exchange.as_deref(), Some(b"arg".as_slice()));
        assert_eq!(a.dead_letter_routing_key.as_deref(), Some(b"rk".as_slice()));
        assert_eq!(a.overflow, Overflow::DropHead, "x-overflow was declared");
        let b = merge_queue_args(&declared, false, false, Some(&def));
        assert_eq!(b.overflow, Overflow::RejectPublish);
        assert_eq!(merge_queue_args(&declared, false, false, None), declared);
    }

    /// The highest priority wins; ties go to the first name.
    #[test]
    fn best_policy() {
        let p = |name: &str, prio: i64, pattern: &str| {
            std::rc::Rc::new(
                Policy::from_json(
                    "/",
                    name,
                    &json!({"pattern": pattern, "priority": prio, "definition": {"max-length": 1}}),
                )
                .expect("valid"),
            )
        };
        let list = [
            p("b", 1, "^q"),
            p("a", 1, "^q"),
            p("c", 0, ""),
            p("d", 9, "^x"),
        ];
        let name = |t| best(list.iter(), t, b"q1").map(|p| p.name.clone());
        assert_eq!(name(Target::Queue).as_deref(), Some("a"));
        assert_eq!(
            best(list.iter(), Target::Queue, b"zz").map(|p| p.name.as_str()),
            Some("c")
        );
    }
}
