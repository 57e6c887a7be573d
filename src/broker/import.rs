//! RabbitMQ's definitions documents on the broker's side. Import applies users, vhosts and
//! permissions (`definitions::import_access`), then exchanges, queues and bindings through the
//! entity verbs as RabbitMQ 3.10's import does: an exchange or queue that exists is kept as it
//! is, names starting "amq." are skipped, a binding whose source or destination is missing is
//! skipped (RabbitMQ's export leaves out internal exchanges but not their bindings). Whatever
//! coney would not act on (policies, other runtime parameters, queue types other than classic,
//! unknown keys) is refused with the entry's name before anything is applied. Export writes
//! the broker's state as RabbitMQ exports it.

use super::exchange::{Destination, ExchangeKind, DELAYED_TYPE};
use super::policy::Policy;
use super::{Actor, Broker, ConnId, ExchangeFlags, QueueFlags, STANDARD_EXCHANGES};
use crate::definitions::document::{
    BindingDef, DestinationType, ExchangeDef, OtherKeys, PolicyDef, QueueDef,
};
use crate::definitions::{import_access, json_to_table, table_to_json, Definitions, ImportError};
use crate::protocol::FieldTable;
use log::{info, warn};

/// The connection id definitions are imported as (never a client's: the reactor's keys are
/// far below it).
const IMPORT_CONN: ConnId = ConnId(u32::MAX);

/// The RabbitMQ version whose definitions format exports follow.
const RABBIT_VERSION: &str = "3.10.8";

/// Queue types and vhost default queue types coney has.
const CLASSIC: &str = "classic";
const QUORUM: &str = "quorum";

fn refuse(entry: impl Into<String>, reason: impl std::fmt::Display) -> ImportError {
    ImportError {
        entry: entry.into(),
        reason: reason.to_string(),
    }
}

fn no_other_keys(entry: &str, other: &OtherKeys) -> Result<(), ImportError> {
    match other.keys().next() {
        None => Ok(()),
        Some(k) => Err(refuse(entry, format!("unknown key '{k}'"))),
    }
}

fn exchange_entry(x: &ExchangeDef) -> String {
    format!("exchange '{}' in vhost '{}'", x.name, x.vhost)
}

fn queue_entry(q: &QueueDef) -> String {
    format!("queue '{}' in vhost '{}'", q.name, q.vhost)
}

fn policy_entry(p: &PolicyDef) -> String {
    format!("policy '{}' in vhost '{}'", p.name, p.vhost)
}

/// A policy of a definitions document, checked as the API checks one.
fn policy_from_def(p: &PolicyDef) -> Result<Policy, ImportError> {
    let mut body = serde_json::Map::new();
    body.insert("pattern".into(), p.pattern.clone().into());
    body.insert(
        "definition".into(),
        serde_json::Value::Object(p.definition.clone()),
    );
    body.insert("priority".into(), p.priority.unwrap_or(0).into());
    if let Some(a) = &p.apply_to {
        body.insert("apply-to".into(), a.clone().into());
    }
    Policy::from_json(&p.vhost, &p.name, &serde_json::Value::Object(body)).map_err(|e| {
        refuse(
            policy_entry(p),
            e.0.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
                .trim_end(),
        )
    })
}

fn binding_entry(b: &BindingDef) -> String {
    format!(
        "binding of '{}' to '{}' with key '{}' in vhost '{}'",
        b.source, b.destination, b.routing_key, b.vhost
    )
}

/// What an import did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
    /// Entries RabbitMQ's import also skips: existing entities, "amq." names, bindings with a
    /// missing end.
    pub skipped: usize,
}

impl Broker {
    /// Imports a definitions document. `durable_only` refuses transient exchanges and queues
    /// (an offline import keeps only what survives a restart). Nothing is applied if any entry
    /// is refused by the checks made before applying; an entity verb failing part way (a
    /// vhost's queue limit) leaves what was applied, as in RabbitMQ — callers that must be
    /// all or nothing (boot, offline import) do not commit on error.
    pub fn import_definitions(
        &mut self,
        doc: &Definitions,
        durable_only: bool,
    ) -> Result<Imported, ImportError> {
        self.check_importable(doc, durable_only)?;
        let access = import_access(doc, &self.access)?;
        for x in &doc.exchanges {
            if access.vhost(&x.vhost).is_none() {
                return Err(refuse(exchange_entry(x), "no such vhost"));
            }
        }
        for q in &doc.queues {
            if access.vhost(&q.vhost).is_none() {
                return Err(refuse(queue_entry(q), "no such vhost"));
            }
        }
        for p in doc
            .parameters
            .iter()
            .filter(|p| super::parameters::COMPONENTS.contains(&p.component.as_str()))
        {
            if access.vhost(&p.vhost).is_none() {
                let entry = format!(
                    "parameter '{}' of component '{}' in vhost '{}'",
                    p.name, p.component, p.vhost
                );
                return Err(refuse(entry, "no such vhost"));
            }
        }
        for p in &doc.policies {
            if access.vhost(&p.vhost).is_none() {
                return Err(refuse(policy_entry(p), "no such vhost"));
            }
        }
        // Checked before anything changes, so a refused policy leaves the broker as it was.
        let policies = doc
            .policies
            .iter()
            .map(policy_from_def)
            .collect::<Result<Vec<_>, _>>()?;
        self.import_parameters(doc);
        self.replace_access(access);
        let mut done = Imported::default();
        // Before the queues and exchanges, as RabbitMQ imports them, so each is created with
        // its policy.
        for p in policies {
            self.put_policy(p);
        }
        for x in &doc.exchanges {
            self.import_exchange(x, &mut done)?;
        }
        for q in &doc.queues {
            self.import_queue(q, &mut done)?;
        }
        for b in &doc.bindings {
            self.import_binding(b, &mut done)?;
        }
        info!(
            "imported definitions: {} users, {} vhosts, {} permissions, {} topic permissions, {} exchanges, {} queues, {} bindings ({} skipped as RabbitMQ does)",
            doc.users.len(), doc.vhosts.len(), doc.permissions.len(), doc.topic_permissions.len(),
            done.exchanges, done.queues, done.bindings, done.skipped
        );
        Ok(done)
    }

    /// Refuses, naming the entry, what coney would not act on.
    fn check_importable(&self, doc: &Definitions, durable_only: bool) -> Result<(), ImportError> {
        no_other_keys("definitions", &doc.other)?;
        super::parameters::check_parameters(doc).map_err(|(e, r)| refuse(e, r))?;
        if let Some(p) = doc.global_parameters.first() {
            let entry = format!("global parameter '{}'", p.name);
            return Err(refuse(entry, "global parameters are not supported"));
        }
        for p in &doc.policies {
            let entry = policy_entry(p);
            no_other_keys(&entry, &p.other)?;
            policy_from_def(p)?;
        }
        let other_parameter = doc.parameters.iter().find(|p| {
            p.component != crate::definitions::access::VHOST_LIMITS_COMPONENT
                && !super::parameters::COMPONENTS.contains(&p.component.as_str())
        });
        if let Some(p) = other_parameter {
            let entry = format!(
                "parameter '{}' of component '{}' in vhost '{}'",
                p.name, p.component, p.vhost
            );
            return Err(refuse(entry, "this component is not supported"));
        }
        for v in &doc.vhosts {
            let queue_type = v
                .metadata
                .as_ref()
                .and_then(|m| m.default_queue_type.as_deref());
            if queue_type.is_some_and(|t| t != CLASSIC) {
                let entry = format!("vhost '{}'", v.name);
                let t = queue_type.unwrap_or_default();
                return Err(refuse(
                    entry,
                    format!("default queue type '{t}' is not supported (coney has classic queues)"),
                ));
            }
        }
        for x in &doc.exchanges {
            let entry = exchange_entry(x);
            no_other_keys(&entry, &x.other)?;
            let delayed = x.exchange_type == DELAYED_TYPE;
            if !delayed && ExchangeKind::parse(x.exchange_type.as_bytes()).is_none() {
                let t = &x.exchange_type;
                return Err(refuse(
                    entry,
                    format!("exchange type '{t}' is not supported"),
                ));
            }
            if durable_only && !x.durable {
                return Err(refuse(entry, "a transient exchange would not survive until the broker starts; import it at boot (load_definitions)"));
            }
            json_to_table(&x.arguments).map_err(|e| refuse(&entry, e))?;
        }
        for q in &doc.queues {
            let entry = queue_entry(q);
            no_other_keys(&entry, &q.other)?;
            // The arguments decide a queue's type, as in RabbitMQ; `type` must agree with them.
            let declared = match q.arguments.get("x-queue-type") {
                Some(serde_json::Value::String(t)) => t.as_str(),
                _ => CLASSIC,
            };
            let named = q.queue_type.as_deref().unwrap_or(declared);
            if named != declared || !(named == CLASSIC || named == QUORUM) {
                return Err(refuse(
                    entry,
                    format!("queue type '{named}' is not supported (coney has classic and quorum queues; x-queue-type must name the same)"),
                ));
            }
            if durable_only && !q.durable {
                return Err(refuse(entry, "a transient queue would not survive until the broker starts; import it at boot (load_definitions)"));
            }
            json_to_table(&q.arguments).map_err(|e| refuse(&entry, e))?;
        }
        for b in &doc.bindings {
            let entry = binding_entry(b);
            no_other_keys(&entry, &b.other)?;
            json_to_table(&b.arguments).map_err(|e| refuse(&entry, e))?;
        }
        Ok(())
    }

    /// The actor definitions of `vhost` are imported as.
    fn import_actor(&self, vhost: &str, entry: &str) -> Result<Actor, ImportError> {
        self.internal_actor(IMPORT_CONN, vhost)
            .ok_or_else(|| refuse(entry, "no such vhost"))
    }

    fn import_exchange(&mut self, x: &ExchangeDef, done: &mut Imported) -> Result<(), ImportError> {
        let entry = exchange_entry(x);
        if x.name.is_empty() || x.name.starts_with("amq.") {
            warn!("import: skipping {entry}: its name is reserved (as RabbitMQ does)");
            done.skipped += 1;
            return Ok(());
        }
        let who = self.import_actor(&x.vhost, &entry)?;
        let exists = self.exchange_id(&who, x.name.as_bytes()).is_ok();
        if exists {
            done.skipped += 1;
            return Ok(());
        }
        let args = json_to_table(&x.arguments).map_err(|e| refuse(&entry, e))?;
        let args = FieldTable::parse(&args).map_err(|_| refuse(&entry, "bad arguments"))?;
        let flags = ExchangeFlags {
            passive: false,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal.unwrap_or(false),
        };
        self.declare_exchange(
            &who,
            x.name.as_bytes(),
            x.exchange_type.as_bytes(),
            flags,
            args,
        )
        .map_err(|e| refuse(&entry, e.text))?;
        done.exchanges += 1;
        Ok(())
    }

    fn import_queue(&mut self, q: &QueueDef, done: &mut Imported) -> Result<(), ImportError> {
        let entry = queue_entry(q);
        if q.name.starts_with("amq.") {
            warn!("import: skipping {entry}: its name is reserved (as RabbitMQ does)");
            done.skipped += 1;
            return Ok(());
        }
        let who = self.import_actor(&q.vhost, &entry)?;
        if self.queue_for(&who, q.name.as_bytes()).is_ok() {
            done.skipped += 1;
            return Ok(());
        }
        let args = json_to_table(&q.arguments).map_err(|e| refuse(&entry, e))?;
        let args = FieldTable::parse(&args).map_err(|_| refuse(&entry, "bad arguments"))?;
        let flags = QueueFlags {
            passive: false,
            durable: q.durable,
            exclusive: false,
            auto_delete: q.auto_delete,
        };
        self.declare_queue(&who, q.name.as_bytes(), flags, args)
            .map_err(|e| refuse(&entry, e.text))?;
        done.queues += 1;
        Ok(())
    }

    fn import_binding(&mut self, b: &BindingDef, done: &mut Imported) -> Result<(), ImportError> {
        let entry = binding_entry(b);
        let who = self.import_actor(&b.vhost, &entry)?;
        let source_exists = self.exchange_id(&who, b.source.as_bytes()).is_ok();
        let dest_exists = match b.destination_type {
            DestinationType::Queue => self.queue_for(&who, b.destination.as_bytes()).is_ok(),
            DestinationType::Exchange => self.exchange_id(&who, b.destination.as_bytes()).is_ok(),
        };
        if b.source.is_empty() || !source_exists || !dest_exists {
            warn!("import: skipping {entry}: its source or destination does not exist (as RabbitMQ does)");
            done.skipped += 1;
            return Ok(());
        }
        let args = json_to_table(&b.arguments).map_err(|e| refuse(&entry, e))?;
        let args = FieldTable::parse(&args).map_err(|_| refuse(&entry, "bad arguments"))?;
        let (source, dest, key) = (
            b.source.as_bytes(),
            b.destination.as_bytes(),
            b.routing_key.as_bytes(),
        );
        let result = match b.destination_type {
            DestinationType::Queue => self.bind_queue(&who, dest, source, key, args),
            DestinationType::Exchange => self.bind_exchange(&who, dest, source, key, args),
        };
        result.map_err(|e| refuse(&entry, e.text))?;
        done.bindings += 1;
        Ok(())
    }

    /// The broker's definitions as RabbitMQ 3.10 exports them: users, vhosts, permissions,
    /// topic permissions and vhost limits; exchanges other than the default, `amq.*` and
    /// internal ones; queues other than exclusive ones; every binding not from the default
    /// exchange. Arguments a JSON document cannot hold (a NaN float) are refused by name.
    pub fn export_definitions(&self) -> Result<Definitions, ImportError> {
        let mut d = Definitions {
            rabbit_version: Some(RABBIT_VERSION.into()),
            rabbitmq_version: Some(RABBIT_VERSION.into()),
            product_name: Some("coney".into()),
            product_version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Default::default()
        };
        self.export_access(&mut d);
        for p in self.policies(None) {
            d.policies.push(PolicyDef {
                apply_to: Some(p.apply_to.name().into()),
                definition: p.definition.clone(),
                name: p.name.clone(),
                pattern: p.pattern.clone(),
                priority: Some(p.priority),
                vhost: p.vhost.clone(),
                other: OtherKeys::new(),
            });
        }
        let vhost = |id| {
            self.vhosts
                .get(id)
                .map_or_else(String::new, |v| v.name.to_string())
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let standard = |n: &[u8]| STANDARD_EXCHANGES.iter().any(|(s, _)| s.as_bytes() == n);
        for (_, x) in self.exchanges.iter() {
            if x.internal || standard(&x.name) || x.name.starts_with(b"amq.") {
                continue;
            }
            let entry = format!("exchange '{}' in vhost '{}'", text(&x.name), vhost(x.vhost));
            d.exchanges.push(ExchangeDef {
                arguments: arguments_json(&x.arguments, &entry)?,
                auto_delete: x.auto_delete,
                durable: x.durable,
                internal: None,
                name: text(&x.name),
                exchange_type: x.type_name().into(),
                vhost: vhost(x.vhost),
                other: OtherKeys::new(),
            });
        }
        for (_, q) in self.queues.iter() {
            if q.owner.is_some() {
                continue;
            }
            let entry = format!("queue '{}' in vhost '{}'", text(&q.name), vhost(q.vhost));
            d.queues.push(QueueDef {
                arguments: arguments_json(&q.arguments, &entry)?,
                auto_delete: q.auto_delete,
                durable: q.durable,
                name: text(&q.name),
                queue_type: Some(if q.is_quorum() { QUORUM } else { CLASSIC }.into()),
                vhost: vhost(q.vhost),
                other: OtherKeys::new(),
            });
        }
        for b in self.bindings.iter() {
            let Some(source) = self.exchanges.get(b.source) else {
                continue;
            };
            let (destination_type, destination) = match b.dest {
                Destination::Queue(q) => match self.queues.get(q) {
                    Some(q) => (DestinationType::Queue, text(&q.name)),
                    None => continue,
                },
                Destination::Exchange(x) => match self.exchanges.get(x) {
                    Some(x) => (DestinationType::Exchange, text(&x.name)),
                    None => continue,
                },
            };
            let entry = format!("binding of '{}' to '{destination}'", text(&source.name));
            d.bindings.push(BindingDef {
                arguments: arguments_json(&b.args, &entry)?,
                destination,
                destination_type,
                routing_key: text(&b.key),
                source: text(&source.name),
                vhost: vhost(source.vhost),
                other: OtherKeys::new(),
            });
        }
        Ok(d)
    }
}

/// Raw field-table contents as a JSON object.
fn arguments_json(
    raw: &[u8],
    entry: &str,
) -> Result<crate::definitions::document::JsonTable, ImportError> {
    let table =
        FieldTable::parse(raw).map_err(|_| refuse(entry, "arguments are not a field table"))?;
    table_to_json(table).map_err(|e| refuse(entry, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Definitions {
        Definitions::parse(json.as_bytes()).expect("document")
    }

    /// A quorum queue and an x-delayed-message exchange (as RabbitMQ 3.10 exports them:
    /// `type` and x-queue-type agree; the exchange's type is the plugin's) import and export
    /// with their types; a queue whose `type` disagrees with its x-queue-type is refused by
    /// name and nothing is applied.
    #[test]
    fn quorum_queues_and_delayed_exchanges_round_trip() {
        let mut b = Broker::new();
        let good = doc(r#"{
            "queues": [{"name": "qq", "vhost": "/", "durable": true, "auto_delete": false,
                        "type": "quorum", "arguments": {"x-queue-type": "quorum"}}],
            "exchanges": [{"name": "later", "vhost": "/", "type": "x-delayed-message",
                           "durable": true, "auto_delete": false, "internal": false,
                           "arguments": {"x-delayed-type": "direct"}}]}"#);
        b.import_definitions(&good, false).expect("import");
        let out = b.export_definitions().expect("export");
        let q = out.queues.iter().find(|q| q.name == "qq").expect("qq");
        assert_eq!(q.queue_type.as_deref(), Some("quorum"));
        let x = out
            .exchanges
            .iter()
            .find(|x| x.name == "later")
            .expect("later");
        assert_eq!(x.exchange_type, "x-delayed-message");

        let bad = doc(
            r#"{"queues": [{"name": "odd", "vhost": "/", "durable": true,
            "auto_delete": false, "type": "quorum", "arguments": {}}]}"#,
        );
        let e = b.import_definitions(&bad, false).expect_err("refused");
        assert!(e.to_string().contains("queue 'odd'"), "{e}");
        let out = b.export_definitions().expect("export");
        assert!(out.queues.iter().all(|q| q.name != "odd"));
    }
}
