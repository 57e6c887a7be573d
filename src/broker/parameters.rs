//! Runtime parameters of the `shovel` component, per vhost and name, as RabbitMQ keeps them:
//! the JSON value as given (checked by `definitions::shovel` first). The broker owns them so
//! they are saved with the access tables (one record in RabbitMQ's definitions format),
//! exported and imported with definitions, and deleted with their vhost; the shovels
//! themselves run above the broker and follow `parameters_generation`.

use super::Broker;
use crate::definitions::document::{Definitions, OtherKeys, ParameterDef};
use crate::definitions::shovel::{parse_shovel, SHOVEL_COMPONENT};
use crate::limits::SHOVELS_MAX;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Default)]
pub(super) struct Parameters {
    /// (vhost, name) → value, in RabbitMQ's listing order.
    shovels: BTreeMap<(String, String), Value>,
    /// Bumped at every change, so the shovels above see one without a comparison.
    generation: u64,
}

/// Why a parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterError {
    NoVhost,
    /// RabbitMQ's "Validation failed" lines.
    Invalid(String),
    TooMany,
}

impl Broker {
    /// Every shovel parameter: (vhost, name, value), by vhost then name.
    pub fn shovel_parameters(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.parameters
            .shovels
            .iter()
            .map(|((v, n), val)| (v.as_str(), n.as_str(), val))
    }

    pub fn shovel_parameter(&self, vhost: &str, name: &str) -> Option<&Value> {
        self.parameters
            .shovels
            .get(&(vhost.to_owned(), name.to_owned()))
    }

    /// Changes whenever a shovel parameter is set or deleted.
    pub fn parameters_generation(&self) -> u64 {
        self.parameters.generation
    }

    /// Sets (creates or replaces) a shovel parameter after checking it as RabbitMQ does;
    /// returns whether it is new. Saved with the turn's commit.
    pub fn set_shovel_parameter(
        &mut self,
        vhost: &str,
        name: &str,
        value: Value,
    ) -> Result<bool, ParameterError> {
        if self.vhost_id(vhost).is_none() {
            return Err(ParameterError::NoVhost);
        }
        parse_shovel(name, &value).map_err(ParameterError::Invalid)?;
        let key = (vhost.to_owned(), name.to_owned());
        let new = !self.parameters.shovels.contains_key(&key);
        if new && self.parameters.shovels.len() >= SHOVELS_MAX {
            return Err(ParameterError::TooMany);
        }
        self.parameters.shovels.insert(key, value);
        self.parameters.generation += 1;
        self.record_access();
        Ok(new)
    }

    /// Deletes a shovel parameter; false when there was none.
    pub fn delete_shovel_parameter(&mut self, vhost: &str, name: &str) -> bool {
        let key = (vhost.to_owned(), name.to_owned());
        if self.parameters.shovels.remove(&key).is_none() {
            return false;
        }
        self.parameters.generation += 1;
        self.record_access();
        true
    }

    /// A deleted vhost's parameters go with it (saved by the caller's access record).
    pub(super) fn drop_vhost_parameters(&mut self, vhost: &str) {
        let before = self.parameters.shovels.len();
        self.parameters.shovels.retain(|(v, _), _| v != vhost);
        if self.parameters.shovels.len() != before {
            self.parameters.generation += 1;
        }
    }

    /// The shovel parameters into `defs.parameters`, as RabbitMQ exports them.
    pub(super) fn export_parameters(&self, defs: &mut Definitions) {
        defs.parameters.retain(|p| p.component != SHOVEL_COMPONENT);
        defs.parameters
            .extend(self.shovel_parameters().map(|(v, n, val)| ParameterDef {
                component: SHOVEL_COMPONENT.to_owned(),
                name: n.to_owned(),
                value: val.clone(),
                vhost: v.to_owned(),
                other: OtherKeys::new(),
            }));
    }

    /// Takes the shovel parameters of a document whose entries were checked
    /// (`check_shovel_parameters`) and whose vhosts exist.
    pub(super) fn import_parameters(&mut self, defs: &Definitions) {
        for p in defs
            .parameters
            .iter()
            .filter(|p| p.component == SHOVEL_COMPONENT)
        {
            self.parameters
                .shovels
                .insert((p.vhost.clone(), p.name.clone()), p.value.clone());
            self.parameters.generation += 1;
        }
    }
}

/// Checks a document's shovel parameters; the error names the entry and gives RabbitMQ's
/// validation text.
pub(super) fn check_shovel_parameters(defs: &Definitions) -> Result<(), (String, String)> {
    for p in defs
        .parameters
        .iter()
        .filter(|p| p.component == SHOVEL_COMPONENT)
    {
        let entry = format!(
            "parameter '{}' of component 'shovel' in vhost '{}'",
            p.name, p.vhost
        );
        if let Some(k) = p.other.keys().next() {
            return Err((entry, format!("unknown key '{k}'")));
        }
        parse_shovel(&p.name, &p.value)
            .map_err(|e| (entry, format!("Validation failed\n\n{e}")))?;
    }
    Ok(())
}
