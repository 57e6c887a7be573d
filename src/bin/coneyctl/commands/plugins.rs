//! The shovel and federation plugins' status commands, from the management plugins' listings:
//! shovel_status (`/api/shovels`) as rabbitmqctl 3.10 prints it, a table of maps whose header
//! is the first shovel's keys (a running shovel has source and destination details that a
//! starting or terminated one has not), and federation_status (`/api/federation-links`) as
//! rabbitmqctl's Erlang formatter prints its list of maps (erlterm.rs), or JSON. The API's
//! field names are mapped back to the ones rabbitmqctl's commands give them.

use super::Ctx;
use crate::api::ApiError;
use crate::cell::json_string;
use crate::erlterm::{self, Term};
use crate::failure::{Failure, EX_SOFTWARE, EX_UNAVAILABLE};
use crate::output::KeyedRow;
use serde_json::Value;
use std::collections::BTreeMap;

/// The listing at `path` (every vhost the user can see), or why there is none.
fn fetch(ctx: &Ctx, path: &str, plugin: &str) -> Result<Vec<Value>, Failure> {
    match ctx.api.get(path) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(other) => Err(Failure::error(
            EX_SOFTWARE,
            format!("GET {path} answered {other:.60} instead of a list"),
        )),
        // A RabbitMQ node without the plugin's management part has no such path.
        Err(ApiError::Status { status: 404, .. }) => Err(Failure::error(
            EX_UNAVAILABLE,
            format!("the management API has no /api{path}: is the {plugin} plugin enabled?"),
        )),
        Err(e) => Err(ctx.fail(e)),
    }
}

fn text<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

/// One shovel as rabbitmqctl's shovel_status shows it, keys sorted (an Erlang map's order).
fn shovel_row(item: &Value) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let get = |k: &str| text(item, k).unwrap_or("").to_string();
    m.insert("name", get("name"));
    m.insert("vhost", get("vhost"));
    m.insert("type", get("type"));
    m.insert("last_changed", get("timestamp"));
    let state = get("state");
    if state == "running" {
        // rabbitmqctl shows the atom `undefined` for a protocol the status does not give.
        let protocol = |k: &str| text(item, k).unwrap_or("undefined").to_string();
        m.insert("source_protocol", protocol("src_protocol"));
        m.insert("source", get("src_uri"));
        m.insert("destination_protocol", protocol("dest_protocol"));
        m.insert("destination", get("dest_uri"));
        m.insert("termination_reason", String::new());
        const DETAILS: &[(&str, &str)] = &[
            ("src_address", "source_address"),
            ("src_queue", "source_queue"),
            ("src_exchange", "source_exchange"),
            ("src_exchange_key", "source_exchange_key"),
            ("dest_address", "destination_address"),
            ("dest_queue", "destination_queue"),
            ("dest_exchange", "destination_exchange"),
            ("dest_exchange_key", "destination_exchange_key"),
        ];
        for (api, ctl) in DETAILS {
            if let Some(v) = item.get(*api) {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                m.insert(ctl, v);
            }
        }
    } else {
        m.insert("source", String::new());
        m.insert("destination", String::new());
        m.insert("termination_reason", get("reason"));
    }
    m.insert("state", state);
    m
}

pub fn shovel_status(ctx: &mut Ctx, _args: &[String]) -> Result<(), Failure> {
    let node = ctx.node_name()?;
    ctx.out.info(&format!("Shovel status on node {node}"));
    let items = fetch(ctx, "/shovels", "rabbitmq_shovel_management")?;
    let rows: Vec<KeyedRow> = items
        .iter()
        .map(|item| {
            shovel_row(item)
                .into_iter()
                .map(|(k, v)| {
                    let json = json_string(&v);
                    (k.to_string(), (v, json))
                })
                .collect()
        })
        .collect();
    ctx.out.keyed_rows(&rows);
    Ok(())
}

/// The keys of a federation link in rabbitmqctl's map, and whether the value is an atom
/// (otherwise a binary). Keys the link has not (a queue of an exchange link, the error of a
/// running one) are empty binaries, as rabbitmqctl fills them in.
const LINK_KEYS: &[(&str, &str, bool)] = &[
    ("error", "error", false),
    ("exchange", "exchange", false),
    ("id", "id", false),
    ("last_changed", "timestamp", false),
    ("local_connection", "local_connection", false),
    ("queue", "queue", false),
    ("status", "status", true),
    ("type", "type", true),
    ("upstream", "upstream", false),
    ("upstream_exchange", "upstream_exchange", false),
    ("upstream_queue", "upstream_queue", false),
    ("uri", "uri", false),
    ("vhost", "vhost", false),
];

pub fn federation_status(ctx: &mut Ctx, _args: &[String]) -> Result<(), Failure> {
    let only_down = ctx.options.specific("only-down").is_some();
    let node = ctx.node_name()?;
    ctx.out.info(&if only_down {
        format!("Listing federation links which are down on node {node}...")
    } else {
        format!("Listing federation links on node {node}...")
    });
    let items = fetch(ctx, "/federation-links", "rabbitmq_federation_management")?;
    let links: Vec<Vec<(&str, String, bool)>> = items
        .iter()
        // --only-down: the links that failed, as rabbitmqctl's filter.
        .filter(|i| !only_down || !matches!(text(i, "status"), Some("running" | "starting")))
        .map(|item| {
            LINK_KEYS
                .iter()
                .map(|(key, api, atom)| (*key, text(item, api).unwrap_or("").to_string(), *atom))
                .collect()
        })
        .collect();
    if ctx.out.json() {
        let mut text = String::from("[\n");
        for (i, link) in links.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let fields: Vec<String> = link
                .iter()
                .map(|(k, v, _)| format!("{}:{}", json_string(k), json_string(v)))
                .collect();
            text.push_str(&format!("{{{}}}\n", fields.join(",")));
        }
        text.push_str("]\n");
        ctx.out.raw(text.as_bytes());
    } else {
        let term = Term::List(
            links
                .iter()
                .map(|link| {
                    Term::Map(
                        link.iter()
                            .map(|(k, v, atom)| {
                                let value = if *atom {
                                    Term::atom(v)
                                } else {
                                    Term::binary(v)
                                };
                                (Term::atom(k), value)
                            })
                            .collect(),
                    )
                })
                .collect(),
        );
        ctx.out.line(&erlterm::pretty(&term));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A running shovel gets rabbitmqctl's names for the API's fields; a terminated one its
    /// reason and empty endpoints.
    #[test]
    fn shovel_rows() {
        let running = json!({"node": "n", "timestamp": "2026-12-04 13:57:01", "name": "s1",
            "vhost": "/", "type": "dynamic", "state": "running", "src_uri": "amqp://",
            "src_protocol": "amqp091", "dest_protocol": "amqp091", "dest_uri": "amqp://",
            "src_queue": "a", "dest_exchange": "x", "dest_exchange_key": "k"});
        let row = shovel_row(&running);
        let keys: Vec<&str> = row.keys().copied().collect();
        assert_eq!(
            keys,
            [
                "destination",
                "destination_exchange",
                "destination_exchange_key",
                "destination_protocol",
                "last_changed",
                "name",
                "source",
                "source_protocol",
                "source_queue",
                "state",
                "termination_reason",
                "type",
                "vhost"
            ]
        );
        assert_eq!(row["destination_exchange_key"], "k");
        let dead = json!({"name": "s2", "vhost": "v", "type": "dynamic",
            "state": "terminated", "reason": "boom", "timestamp": "t"});
        let row = shovel_row(&dead);
        assert_eq!(row["termination_reason"], "boom");
        assert_eq!(row["source"], "");
        assert_eq!(row.len(), 8);
    }
}
