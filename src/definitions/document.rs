//! RabbitMQ's definitions document (`rabbitmqctl export_definitions`, `load_definitions`,
//! GET/POST /api/definitions) as plain structs, parsed and written with serde_json.
//!
//! Fields are declared in alphabetical order, which is the order RabbitMQ writes them, so an
//! emitted file reads like RabbitMQ's own. Keys this version does not know are kept in
//! `other` (written back unchanged) for the importer to refuse or report. One deliberate
//! difference: RabbitMQ 3.10 exports an operator policy's `definition` as a list of
//! [key, value] pairs and then refuses that form on import ("definition must be a
//! dictionary"); it is read in either form and written as an object, which imports.

use crate::limits::{DEFINITIONS_FILE_MAX_BYTES, DEFINITIONS_JSON_DEPTH_MAX};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Arguments of a queue, exchange or binding, as JSON (see arguments.rs for the AMQP form).
pub type JsonTable = Map<String, Value>;
/// Keys a record had that these structs do not name.
pub type OtherKeys = BTreeMap<String, Value>;

/// User or vhost tags: RabbitMQ 3.9+ writes a list; older exports and `add_vhost` without
/// tags write a comma-separated string ("" for none). Kept in the form read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tags {
    List(Vec<String>),
    Text(String),
}

impl Tags {
    /// The tags as a list; a string is split on commas and trimmed, as RabbitMQ does.
    pub fn names(&self) -> Vec<String> {
        match self {
            Tags::List(l) => l.clone(),
            Tags::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl Default for Tags {
    fn default() -> Self {
        Tags::List(Vec::new())
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserLimitsDef {
    #[serde(
        rename = "max-channels",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_channels: Option<i64>,
    #[serde(
        rename = "max-connections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connections: Option<i64>,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<UserLimitsDef>,
    pub name: String,
    /// A clear-text password, accepted on import by RabbitMQ (hashed there); never exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VhostMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VhostDef {
    /// Written by RabbitMQ as [[name, value], …] for information; import ignores it and
    /// takes vhost limits from the `vhost-limits` parameter, as RabbitMQ does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<VhostMetadata>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<bool>,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub configure: String,
    pub read: String,
    pub user: String,
    pub vhost: String,
    pub write: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub exchange: String,
    pub read: String,
    pub user: String,
    pub vhost: String,
    pub write: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

/// A runtime parameter: shovels, federation upstreams, vhost limits, operator policies….
/// The value's shape belongs to its component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterDef {
    pub component: String,
    pub name: String,
    pub value: Value,
    pub vhost: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalParameterDef {
    pub name: String,
    pub value: Value,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    #[serde(rename = "apply-to", default, skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<String>,
    pub definition: JsonTable,
    pub name: String,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    pub vhost: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    #[serde(default)]
    pub arguments: JsonTable,
    pub auto_delete: bool,
    pub durable: bool,
    pub name: String,
    /// "classic", "quorum" or "stream"; absent before RabbitMQ 3.8.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<String>,
    pub vhost: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    #[serde(default)]
    pub arguments: JsonTable,
    pub auto_delete: bool,
    pub durable: bool,
    /// RabbitMQ 3.10 exports no internal exchanges and so no `internal` key; import reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<bool>,
    pub name: String,
    #[serde(rename = "type")]
    pub exchange_type: String,
    pub vhost: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    Queue,
    Exchange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    #[serde(default)]
    pub arguments: JsonTable,
    pub destination: String,
    pub destination_type: DestinationType,
    pub routing_key: String,
    pub source: String,
    pub vhost: String,
    #[serde(flatten)]
    pub other: OtherKeys,
}

/// The whole document. Every list may be absent on input (RabbitMQ's import allows it) and
/// is always written, as RabbitMQ writes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Definitions {
    #[serde(default)]
    pub bindings: Vec<BindingDef>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeDef>,
    #[serde(default)]
    pub global_parameters: Vec<GlobalParameterDef>,
    #[serde(default)]
    pub parameters: Vec<ParameterDef>,
    #[serde(default)]
    pub permissions: Vec<PermissionDef>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionDef>,
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub vhosts: Vec<VhostDef>,
    #[serde(flatten)]
    pub other: OtherKeys,
}

/// Why a definitions document could not be read.
#[derive(Debug)]
pub enum DefinitionsError {
    TooLarge {
        bytes: usize,
    },
    /// Not JSON, a field of the wrong type, or nesting beyond `DEFINITIONS_JSON_DEPTH_MAX`;
    /// serde_json's message names the line and column.
    Json(serde_json::Error),
}

impl fmt::Display for DefinitionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefinitionsError::TooLarge { bytes } => write!(
                f,
                "definitions of {bytes} bytes are larger than {DEFINITIONS_FILE_MAX_BYTES}"
            ),
            DefinitionsError::Json(e) => {
                write!(f, "definitions are not valid: {}", without_values(e))
            }
        }
    }
}

/// serde_json's message with the values it quotes hidden: a value in the wrong place may be
/// a password (`invalid type: string "…"`, `unknown variant `…``), and this text is logged.
/// Field names stay (`missing field `name``).
fn without_values(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..=start]);
        match rest[start + 1..].find('"') {
            Some(len) => {
                out.push_str("…\"");
                rest = &rest[start + 1 + len + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    const VARIANT: &str = "unknown variant `";
    if let Some(at) = out.find(VARIANT) {
        let value_at = at + VARIANT.len();
        if let Some(len) = out[value_at..].find('`') {
            out.replace_range(value_at..value_at + len, "…");
        }
    }
    out
}

/// The component of operator policies among runtime parameters.
pub const OPERATOR_POLICY_COMPONENT: &str = "operator_policy";

impl Definitions {
    /// Parses a document of at most `DEFINITIONS_FILE_MAX_BYTES`. serde_json refuses nesting
    /// deeper than `DEFINITIONS_JSON_DEPTH_MAX` instead of recursing further.
    pub fn parse(json: &[u8]) -> Result<Self, DefinitionsError> {
        if json.len() > DEFINITIONS_FILE_MAX_BYTES {
            return Err(DefinitionsError::TooLarge { bytes: json.len() });
        }
        let mut d: Definitions = serde_json::from_slice(json).map_err(DefinitionsError::Json)?;
        for p in &mut d.parameters {
            if p.component == OPERATOR_POLICY_COMPONENT {
                pairs_to_object(&mut p.value);
            }
        }
        Ok(d)
    }

    /// One line of JSON, as `rabbitmqctl export_definitions` writes.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Indented JSON, as the management UI's download writes.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

const _: () = assert!(
    DEFINITIONS_JSON_DEPTH_MAX == 128,
    "serde_json's fixed recursion limit"
);

/// Rewrites `{"definition": [[k, v], …]}` as `{"definition": {k: v, …}}`; any other shape is
/// left for the importer to judge.
fn pairs_to_object(value: &mut Value) {
    let Some(Value::Array(items)) = value.get("definition") else {
        return;
    };
    let mut object = Map::new();
    for item in items {
        match item.as_array().map(Vec::as_slice) {
            Some([Value::String(k), v]) => {
                object.insert(k.clone(), v.clone());
            }
            _ => return,
        }
    }
    value["definition"] = Value::Object(object);
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS_3_10: &[u8] = include_bytes!("../../tests/fixtures/rabbitmq-3.10-users.json");
    const RICH_3_10: &[u8] = include_bytes!("../../tests/fixtures/rabbitmq-3.10-definitions.json");

    /// Sorts every list of the document (by its JSON text), so two documents compare equal
    /// whatever order their entries came in.
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Array(items) => {
                let mut items: Vec<Value> = items.iter().map(canonical).collect();
                items.sort_by_key(|x| x.to_string());
                Value::Array(items)
            }
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
            }
            other => other.clone(),
        }
    }

    /// RabbitMQ 3.10.8's export of a rich node parses into the structs with nothing left in
    /// `other`, and its entities come out as exported.
    #[test]
    fn rabbitmq_export_parses_completely() {
        let d = Definitions::parse(RICH_3_10).unwrap();
        assert_eq!(d.rabbit_version.as_deref(), Some("3.10.8"));
        assert!(d.other.is_empty());
        assert_eq!(
            (
                d.users.len(),
                d.vhosts.len(),
                d.permissions.len(),
                d.topic_permissions.len()
            ),
            (7, 3, 8, 2)
        );
        assert_eq!(
            (d.queues.len(), d.exchanges.len(), d.bindings.len()),
            (14, 10, 12)
        );
        assert_eq!(
            (
                d.parameters.len(),
                d.policies.len(),
                d.global_parameters.len()
            ),
            (4, 2, 1)
        );
        let all_other_empty = d.users.iter().all(|x| x.other.is_empty())
            && d.vhosts.iter().all(|x| x.other.is_empty())
            && d.queues.iter().all(|x| x.other.is_empty())
            && d.exchanges.iter().all(|x| x.other.is_empty())
            && d.bindings.iter().all(|x| x.other.is_empty())
            && d.parameters.iter().all(|x| x.other.is_empty())
            && d.policies.iter().all(|x| x.other.is_empty());
        assert!(all_other_empty);
        let prod = d.vhosts.iter().find(|v| v.name == "prod").unwrap();
        let meta = prod.metadata.as_ref().unwrap();
        assert_eq!(meta.default_queue_type.as_deref(), Some("quorum"));
        assert_eq!(meta.tags.as_ref().unwrap().names(), ["eu", "critical"]);
        let dev = d.vhosts.iter().find(|v| v.name == "dev").unwrap();
        assert_eq!(
            dev.metadata.as_ref().unwrap().tags,
            Some(Tags::Text(String::new()))
        );
        let e2e = d
            .bindings
            .iter()
            .find(|b| b.destination == "app.fanout")
            .unwrap();
        assert_eq!(e2e.destination_type, DestinationType::Exchange);
        let app = d.users.iter().find(|u| u.name == "app").unwrap();
        assert_eq!(app.limits.as_ref().unwrap().max_channels, Some(20));
    }

    /// Emitting what was parsed gives RabbitMQ's document back, entry for entry, except the
    /// operator policy definition, written in the form RabbitMQ can import.
    #[test]
    fn emit_round_trips_rabbitmq_export() {
        for fixture in [RICH_3_10, USERS_3_10] {
            let d = Definitions::parse(fixture).unwrap();
            let emitted: Value = serde_json::from_str(&d.to_json()).unwrap();
            let mut original: Value = serde_json::from_slice(fixture).unwrap();
            if let Some(params) = original["parameters"].as_array_mut() {
                for p in params
                    .iter_mut()
                    .filter(|p| p["component"] == OPERATOR_POLICY_COMPONENT)
                {
                    pairs_to_object(&mut p["value"]);
                }
            }
            assert_eq!(canonical(&emitted), canonical(&original));
            assert_eq!(Definitions::parse(d.to_json().as_bytes()).unwrap(), d);
            assert_eq!(
                Definitions::parse(d.to_json_pretty().as_bytes()).unwrap(),
                d
            );
        }
        let d = Definitions::parse(RICH_3_10).unwrap();
        let op = d
            .parameters
            .iter()
            .find(|p| p.component == OPERATOR_POLICY_COMPONENT)
            .unwrap();
        assert_eq!(
            op.value["definition"],
            serde_json::json!({"max-length-bytes": 104857600})
        );
    }

    /// The emitted text keeps RabbitMQ's key order: the top-level keys and a queue's keys are
    /// alphabetical, as in its export.
    #[test]
    fn emitted_keys_are_in_rabbitmq_order() {
        let json = Definitions::parse(RICH_3_10).unwrap().to_json();
        let order = [
            "\"bindings\":[",
            "\"exchanges\":[",
            "\"global_parameters\":[",
            "\"parameters\":[",
            "\"permissions\":[",
            "\"policies\":[",
            "\"queues\":[",
            "\"rabbit_version\":\"",
            "\"rabbitmq_version\":\"",
            "\"topic_permissions\":[",
            "\"users\":[",
            "\"vhosts\":[",
        ];
        let top: Vec<usize> = order.iter().map(|k| json.find(k).unwrap()).collect();
        assert!(top.windows(2).all(|w| w[0] < w[1]), "{top:?}");
        let fixture = std::str::from_utf8(RICH_3_10).unwrap();
        let q = r#"{"arguments":{},"auto_delete":false,"durable":true,"name":"scratch","type":"classic","vhost":"dev"}"#;
        assert!(fixture.contains(q) && json.contains(q));
    }

    /// An empty object is a valid (empty) document; unknown keys are kept and written back.
    #[test]
    fn missing_lists_and_unknown_keys() {
        let d = Definitions::parse(b"{}").unwrap();
        assert_eq!(d, Definitions::default());
        let d = Definitions::parse(br#"{"queues":[{"name":"q","vhost":"/","durable":true,"auto_delete":false,"arguments":{},"exclusive":false}],"explicit":1}"#).unwrap();
        assert_eq!(d.other.get("explicit"), Some(&Value::from(1)));
        assert_eq!(
            d.queues[0].other.get("exclusive"),
            Some(&Value::Bool(false))
        );
        assert!(d.to_json().contains("\"exclusive\":false"));
    }

    /// Wrong types and missing required fields are errors naming where, not guesses.
    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            &br#"{"queues":[{"name":"q"}]}"#[..],
            br#"{"users":"alice"}"#,
            br#"{"bindings":[{"source":"a","vhost":"/","destination":"q","destination_type":"stream","routing_key":"","arguments":{}}]}"#,
            br#"{"queues":[{"name":"q","vhost":"/","durable":"yes","auto_delete":false}]}"#,
            b"[]",
            b"{",
            b"",
        ] {
            let e = Definitions::parse(bad).unwrap_err();
            assert!(matches!(e, DefinitionsError::Json(_)), "{e}");
        }
    }

    /// Size and depth are bounded: an oversized document is refused before parsing, and one
    /// nested deeper than serde_json's limit is an error, not a stack overflow.
    #[test]
    fn size_and_depth_are_bounded() {
        let big = vec![b' '; DEFINITIONS_FILE_MAX_BYTES + 1];
        assert!(matches!(
            Definitions::parse(&big),
            Err(DefinitionsError::TooLarge { .. })
        ));
        let nest = |n: usize| {
            format!(
                r#"{{"global_parameters":[{{"name":"x","value":{}1{}}}]}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(Definitions::parse(nest(100).as_bytes()).is_ok());
        let deep = Definitions::parse(nest(100_000).as_bytes()).unwrap_err();
        assert!(deep.to_string().contains("recursion limit"), "{deep}");
    }

    /// Errors name where and what kind, never the value: a misplaced password is not echoed.
    #[test]
    fn errors_do_not_show_values() {
        for bad in [
            &br#"{"users":[{"name":"u","password":"pw","limits":"hunter2"}]}"#[..],
            br#"{"bindings":[{"source":"a","vhost":"/","destination":"q","destination_type":"hunter2","routing_key":"","arguments":{}}]}"#,
            br#"{"users":[{"name":"u","password":"hunter2"#,
        ] {
            let e = Definitions::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("line 1"), "{e}");
        }
        let e = Definitions::parse(br#"{"queues":[{"vhost":"/"}]}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `auto_delete`"), "{e}");
    }

    /// Tags in either form give the same names.
    #[test]
    fn tags_in_both_forms() {
        assert_eq!(
            Tags::Text("administrator, management".into()).names(),
            ["administrator", "management"]
        );
        assert_eq!(Tags::Text(String::new()).names(), Vec::<String>::new());
        assert_eq!(Tags::List(vec!["a".into()]).names(), ["a"]);
    }
}
