//! Runtime parameters per component, vhost and name, as RabbitMQ keeps them: the JSON value
//! as given (checked by `definitions::shovel` or `definitions::federation` first). The
//! components coney acts on are `shovel`, `federation-upstream` and
//! `federation-upstream-set`. The broker owns them so they are saved with the access tables
//! (one record in RabbitMQ's definitions format), exported and imported with definitions,
//! and deleted with their vhost; the shovels and federation links run above the broker and
//! follow `parameters_generation`.

use super::Broker;
use crate::definitions::document::{Definitions, OtherKeys, ParameterDef};
use crate::definitions::federation::{
    parse_upstream, parse_upstream_set, UPSTREAM_COMPONENT, UPSTREAM_SET_COMPONENT,
};
use crate::definitions::shovel::{parse_shovel, SHOVEL_COMPONENT};
use crate::limits::{FEDERATION_UPSTREAMS_MAX, SHOVELS_MAX};
use serde_json::Value;
use std::collections::BTreeMap;

/// The components kept here, in the order they are listed.
pub const COMPONENTS: [&str; 3] = [UPSTREAM_COMPONENT, UPSTREAM_SET_COMPONENT, SHOVEL_COMPONENT];

/// Checks a value of `component`; the error is RabbitMQ's validation lines.
pub fn check_value(component: &str, name: &str, value: &Value) -> Result<(), String> {
    match component {
        SHOVEL_COMPONENT => parse_shovel(name, value).map(|_| ()),
        UPSTREAM_COMPONENT => parse_upstream(name, value).map(|_| ()),
        UPSTREAM_SET_COMPONENT => parse_upstream_set(name, value).map(|_| ()),
        other => Err(format!("component {other} is not supported by coney\n")),
    }
}

/// How many parameters of a component may exist.
fn component_max(component: &str) -> usize {
    match component {
        SHOVEL_COMPONENT => SHOVELS_MAX,
        _ => FEDERATION_UPSTREAMS_MAX,
    }
}

#[derive(Default)]
pub(super) struct Parameters {
    /// (component, vhost, name) → value, in RabbitMQ's listing order within a component.
    values: BTreeMap<(String, String, String), Value>,
    /// Bumped at every change, so the links above see one without a comparison.
    generation: u64,
}

/// Why a parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterError {
    NoVhost,
    /// RabbitMQ's "Validation failed" lines.
    Invalid(String),
    /// More than the component's maximum; the maximum.
    TooMany(usize),
}

fn key(component: &str, vhost: &str, name: &str) -> (String, String, String) {
    (component.to_owned(), vhost.to_owned(), name.to_owned())
}

impl Broker {
    /// Every parameter of a component: (vhost, name, value), by vhost then name.
    pub fn parameters_of<'a>(
        &'a self,
        component: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Value)> {
        self.parameters
            .values
            .range(key(component, "", "")..)
            .take_while(move |((c, _, _), _)| c == component)
            .map(|((_, v, n), val)| (v.as_str(), n.as_str(), val))
    }

    pub fn parameter(&self, component: &str, vhost: &str, name: &str) -> Option<&Value> {
        self.parameters.values.get(&key(component, vhost, name))
    }

    /// Every shovel parameter: (vhost, name, value), by vhost then name.
    pub fn shovel_parameters(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.parameters_of(SHOVEL_COMPONENT)
    }

    pub fn shovel_parameter(&self, vhost: &str, name: &str) -> Option<&Value> {
        self.parameter(SHOVEL_COMPONENT, vhost, name)
    }

    /// Changes whenever a parameter is set or deleted.
    pub fn parameters_generation(&self) -> u64 {
        self.parameters.generation
    }

    /// Sets (creates or replaces) a parameter after checking it as RabbitMQ does; returns
    /// whether it is new. Saved with the turn's commit.
    pub fn set_parameter(
        &mut self,
        component: &str,
        vhost: &str,
        name: &str,
        value: Value,
    ) -> Result<bool, ParameterError> {
        if self.vhost_id(vhost).is_none() {
            return Err(ParameterError::NoVhost);
        }
        check_value(component, name, &value).map_err(ParameterError::Invalid)?;
        let k = key(component, vhost, name);
        let new = !self.parameters.values.contains_key(&k);
        let max = component_max(component);
        if new && self.parameters_of(component).count() >= max {
            return Err(ParameterError::TooMany(max));
        }
        self.parameters.values.insert(k, value);
        self.parameters.generation += 1;
        self.record_access();
        Ok(new)
    }

    /// Deletes a parameter; false when there was none.
    pub fn delete_parameter(&mut self, component: &str, vhost: &str, name: &str) -> bool {
        if self
            .parameters
            .values
            .remove(&key(component, vhost, name))
            .is_none()
        {
            return false;
        }
        self.parameters.generation += 1;
        self.record_access();
        true
    }

    /// Deletes a shovel parameter (src-delete-after reached); false when there was none.
    pub fn delete_shovel_parameter(&mut self, vhost: &str, name: &str) -> bool {
        self.delete_parameter(SHOVEL_COMPONENT, vhost, name)
    }

    /// A deleted vhost's parameters go with it (saved by the caller's access record).
    pub(super) fn drop_vhost_parameters(&mut self, vhost: &str) {
        let before = self.parameters.values.len();
        self.parameters.values.retain(|(_, v, _), _| v != vhost);
        if self.parameters.values.len() != before {
            self.parameters.generation += 1;
        }
    }

    /// The parameters into `defs.parameters`, as RabbitMQ exports them.
    pub(super) fn export_parameters(&self, defs: &mut Definitions) {
        defs.parameters
            .retain(|p| !COMPONENTS.contains(&p.component.as_str()));
        defs.parameters
            .extend(
                self.parameters
                    .values
                    .iter()
                    .map(|((c, v, n), val)| ParameterDef {
                        component: c.clone(),
                        name: n.clone(),
                        value: val.clone(),
                        vhost: v.clone(),
                        other: OtherKeys::new(),
                    }),
            );
    }

    /// Takes the parameters of a document whose entries were checked (`check_parameters`)
    /// and whose vhosts exist.
    pub(super) fn import_parameters(&mut self, defs: &Definitions) {
        for p in defs
            .parameters
            .iter()
            .filter(|p| COMPONENTS.contains(&p.component.as_str()))
        {
            self.parameters
                .values
                .insert(key(&p.component, &p.vhost, &p.name), p.value.clone());
            self.parameters.generation += 1;
        }
    }
}

/// Checks a document's parameters of the components kept here; the error names the entry
/// and gives RabbitMQ's validation text.
pub(super) fn check_parameters(defs: &Definitions) -> Result<(), (String, String)> {
    for p in defs
        .parameters
        .iter()
        .filter(|p| COMPONENTS.contains(&p.component.as_str()))
    {
        let entry = format!(
            "parameter '{}' of component '{}' in vhost '{}'",
            p.name, p.component, p.vhost
        );
        if let Some(k) = p.other.keys().next() {
            return Err((entry, format!("unknown key '{k}'")));
        }
        check_value(&p.component, &p.name, &p.value)
            .map_err(|e| (entry, format!("Validation failed\n\n{e}")))?;
    }
    Ok(())
}
