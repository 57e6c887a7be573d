//! The command table: each command's name, arguments, the options it takes, its help text
//! and the function that runs it; checking an invocation against it (argument count,
//! options that do not apply); and the context a command runs with (options, API, output).

mod columns;
mod definitions;
mod help;
mod listing;
mod parameters;
mod plugins;
mod policies;
mod queues;
mod status;
mod users;

use crate::api::{Api, ApiError};
use crate::cli::{Invocation, Options};
use crate::failure::Failure;
use crate::output::Output;
pub use help::{general_help, unknown_command};

/// What a command needs to run.
pub struct Ctx {
    /// The command being run, as the table names it.
    pub command: &'static str,
    pub options: Options,
    pub api: Api,
    pub out: Output,
}

impl Ctx {
    pub fn vhost(&self) -> &str {
        self.options.vhost()
    }

    /// The failure every command reports alike for an API error.
    pub fn fail(&self, e: ApiError) -> Failure {
        e.failure(&self.api)
    }

    /// rabbitmqctl's JSON result for a command without output: the node and "ok".
    pub fn done(&mut self) -> Result<(), Failure> {
        if self.out.json() {
            let node = self.node_name()?;
            self.out.line(&format!(
                "{{\"node\":{},\"result\":\"ok\"}}",
                crate::cell::json_string(&node)
            ));
        }
        Ok(())
    }

    /// The broker's node name, from /api/overview.
    pub fn node_name(&self) -> Result<String, Failure> {
        let overview = self.api.get("/overview").map_err(|e| self.fail(e))?;
        Ok(overview
            .get("node")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string())
    }
}

/// How a command uses -p/--vhost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhostUse {
    /// The command acts in one vhost, `/` unless -p names another.
    Scoped,
    /// The command covers every vhost; -p narrows it to one.
    Filter,
    /// The command has nothing to do with vhosts: -p is refused.
    None,
    /// Node-wide, but -p is accepted and has no effect, as rabbitmqctl's plugin status
    /// commands take it.
    Ignored,
}

/// Groups of the general help, in rabbitmqctl's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Help,
    Users,
    AccessControl,
    Monitoring,
    Parameters,
    Policies,
    VirtualHosts,
    Definitions,
    Operations,
    Queues,
    Federation,
    Shovel,
}

pub struct Spec {
    pub name: &'static str,
    /// Arguments as shown in the usage line, after the command's options.
    pub args: &'static str,
    pub summary: &'static str,
    pub group: Group,
    pub min_args: usize,
    /// None: any number (columns).
    pub max_args: Option<usize>,
    pub vhost: VhostUse,
    /// Prints a table (so --no-table-headers applies).
    pub table: bool,
    /// Command-specific options it accepts (see cli::VALUED), as `name <value>` for usage.
    pub specific: &'static [(&'static str, &'static str)],
    pub run: fn(&mut Ctx, &[String]) -> Result<(), Failure>,
}

impl Spec {
    /// rabbitmqctl's usage line, with coneyctl's endpoint options.
    pub fn usage(&self) -> String {
        let mut line = format!(
            "coneyctl [--host <host>] [--port <port>] [--username <username>] \
             [--password <password>] [--quiet] {}",
            self.name
        );
        if !matches!(self.vhost, VhostUse::None | VhostUse::Ignored) {
            line.push_str(" [--vhost <vhost>]");
        }
        for (name, value) in self.specific {
            // A flag (federation_status --only-down) has no value.
            if value.is_empty() {
                line.push_str(&format!(" [--{name}]"));
            } else {
                line.push_str(&format!(" [--{name} <{value}>]"));
            }
        }
        if self.table {
            line.push_str(" [--no-table-headers]");
        }
        if !self.args.is_empty() {
            line.push(' ');
            line.push_str(self.args);
        }
        line.push_str(" [--timeout <timeout>]");
        line
    }

    /// Checks the invocation's arguments and options against this command.
    pub fn check(&self, inv: &Invocation) -> Result<(), Failure> {
        let o = &inv.options;
        let mut misplaced: Vec<String> = o
            .specific
            .iter()
            .filter(|(n, _)| !self.specific.iter().any(|(s, _)| s == n))
            .map(|(n, v)| format!("--{n} : {v}"))
            .collect();
        if o.vhost.is_some() && self.vhost == VhostUse::None {
            misplaced.push(format!("--vhost : {}", o.vhost()));
        }
        if o.no_table_headers && !self.table {
            misplaced.push("--no-table-headers : true".into());
        }
        if !misplaced.is_empty() {
            return Err(Failure::usage(format!(
                "Invalid options for this command:\n{}",
                misplaced.join("\n")
            )));
        }
        if inv.args.len() < self.min_args {
            return Err(Failure::usage("not enough arguments."));
        }
        if self.max_args.is_some_and(|max| inv.args.len() > max) {
            return Err(Failure::usage("too many arguments."));
        }
        Ok(())
    }
}

const fn spec(
    name: &'static str,
    args: &'static str,
    summary: &'static str,
    group: Group,
    (min_args, max_args): (usize, Option<usize>),
    vhost: VhostUse,
    run: fn(&mut Ctx, &[String]) -> Result<(), Failure>,
) -> Spec {
    Spec {
        name,
        args,
        summary,
        group,
        min_args,
        max_args,
        vhost,
        table: false,
        specific: &[],
        run,
    }
}

const fn listing(
    name: &'static str,
    args: &'static str,
    summary: &'static str,
    counts: (usize, Option<usize>),
    vhost: VhostUse,
) -> Spec {
    let mut s = spec(
        name,
        args,
        summary,
        Group::Monitoring,
        counts,
        vhost,
        listing::run,
    );
    s.table = true;
    s
}

const fn grouped(mut s: Spec, group: Group) -> Spec {
    s.group = group;
    s
}

const fn with_options(mut s: Spec, specific: &'static [(&'static str, &'static str)]) -> Spec {
    s.specific = specific;
    s
}

use Group as G;
use VhostUse as V;
const ANY: Option<usize> = None;

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("help", "[<command>]", "Displays usage information for a command", G::Help, (0, Some(1)), V::None, help::run),
    spec("add_user", "<username> <password>", "Creates a new user. It has no permissions for any virtual host until set_permissions gives it some.", G::Users, (1, Some(2)), V::None, users::add_user),
    spec("change_password", "<username> <password>", "Changes the user password", G::Users, (1, Some(2)), V::None, users::change_password),
    spec("delete_user", "<username>", "Removes a user", G::Users, (1, Some(1)), V::None, users::delete_user),
    grouped(listing("list_users", "", "List user names and tags", (0, Some(0)), V::None), G::Users),
    spec("set_user_tags", "<username> <tag> [...]", "Sets user tags", G::Users, (1, ANY), V::None, users::set_user_tags),
    spec("clear_permissions", "<username>", "Revokes user permissions for a vhost", G::AccessControl, (1, Some(1)), V::Scoped, users::clear_permissions),
    grouped(listing("list_permissions", "", "Lists user permissions in a virtual host", (0, Some(0)), V::Scoped), G::AccessControl),
    grouped(listing("list_user_permissions", "<username>", "Lists permissions of a user across all virtual hosts", (1, Some(1)), V::None), G::AccessControl),
    grouped(listing("list_vhosts", "[<column> ...]", "Lists virtual hosts", (0, ANY), V::None), G::AccessControl),
    spec("set_permissions", "<username> <conf> <write> <read>", "Sets user permissions for a vhost", G::AccessControl, (4, Some(4)), V::Scoped, users::set_permissions),
    listing("list_bindings", "[<column> ...]", "Lists all bindings on a vhost", (0, ANY), V::Scoped),
    listing("list_channels", "[<column> ...]", "Lists all channels in the node", (0, ANY), V::Filter),
    listing("list_connections", "[<column> ...]", "Lists AMQP 0.9.1 connections for the node", (0, ANY), V::Filter),
    listing("list_consumers", "[<column> ...]", "Lists all consumers for a vhost", (0, ANY), V::Scoped),
    listing("list_exchanges", "[<column> ...]", "Lists exchanges", (0, ANY), V::Scoped),
    listing("list_queues", "[<column> ...]", "Lists queues and their properties", (0, ANY), V::Scoped),
    spec("status", "", "Displays status of a node", G::Monitoring, (0, Some(0)), V::None, status::run),
    spec("clear_policy", "<name>", "Clears (removes) a policy", G::Policies, (1, Some(1)), V::Scoped, policies::clear_policy),
    grouped(listing("list_policies", "", "Lists all policies in a virtual host", (0, Some(0)), V::Scoped), G::Policies),
    with_options(
        spec("set_policy", "<name> <pattern> <definition>", "Sets or updates a policy", G::Policies, (3, Some(3)), V::Scoped, policies::set_policy),
        &[("priority", "priority"), ("apply-to", "apply-to")],
    ),
    spec("clear_parameter", "<component_name> <name>", "Clears a runtime parameter.", G::Parameters, (2, Some(2)), V::Scoped, parameters::clear_parameter),
    grouped(listing("list_parameters", "", "Lists runtime parameters for a virtual host", (0, Some(0)), V::Scoped), G::Parameters),
    spec("set_parameter", "<component_name> <name> <value>", "Sets a runtime parameter.", G::Parameters, (3, Some(3)), V::Scoped, parameters::set_parameter),
    spec("add_vhost", "<vhost>", "Creates a virtual host", G::VirtualHosts, (1, Some(1)), V::None, users::add_vhost),
    spec("delete_vhost", "<vhost>", "Deletes a virtual host", G::VirtualHosts, (1, Some(1)), V::None, users::delete_vhost),
    with_options(
        spec("export_definitions", "<file_path | \"-\">", "Exports definitions in JSON", G::Definitions, (1, Some(1)), V::None, definitions::export),
        &[("format", "json")],
    ),
    with_options(
        spec("import_definitions", "<file_path | \"-\">", "Imports definitions in JSON", G::Definitions, (1, Some(1)), V::None, definitions::import),
        &[("format", "json")],
    ),
    spec("close_connection", "<connection name> <explanation>", "Instructs the broker to close the connection of that name (as list_connections name shows it)", G::Operations, (2, Some(2)), V::None, queues::close_connection),
    spec("delete_queue", "<queue_name>", "Deletes a queue", G::Queues, (1, Some(1)), V::Scoped, queues::delete_queue),
    spec("purge_queue", "<queue>", "Purges a queue (removes all messages in it)", G::Queues, (1, Some(1)), V::Scoped, queues::purge_queue),
    spec("shovel_status", "", "Displays status of Shovel on a node", G::Shovel, (0, Some(0)), V::Ignored, plugins::shovel_status),
    with_options(
        spec("federation_status", "", "Displays federation link status", G::Federation, (0, Some(0)), V::Ignored, plugins::federation_status),
        &[("only-down", "")],
    ),
];

pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli;

    fn inv(args: &[&str]) -> Invocation {
        cli::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn check(args: &[&str]) -> Result<(), Failure> {
        let i = inv(args);
        find(i.command.as_deref().unwrap()).unwrap().check(&i)
    }

    /// Argument counts are rabbitmqctl's: too few or too many is a usage error.
    #[test]
    fn argument_counts() {
        assert!(check(&["add_user", "u", "p"]).is_ok());
        assert!(check(&["add_user", "u"]).is_ok());
        assert_eq!(
            check(&["add_user"]).unwrap_err(),
            Failure::usage("not enough arguments.")
        );
        assert_eq!(
            check(&["add_user", "a", "b", "c"]).unwrap_err(),
            Failure::usage("too many arguments.")
        );
        assert!(check(&["set_permissions", "u", "", "", ""]).is_ok());
        assert!(check(&["list_queues", "a", "b", "c", "d"]).is_ok());
        assert!(check(&["list_policies", "name"]).is_err());
    }

    /// Options that a command would not act on are refused, not ignored.
    #[test]
    fn options_that_do_not_apply() {
        assert!(check(&["set_policy", "--priority", "1", "p", "^q", "{}"]).is_ok());
        assert!(check(&["add_user", "--priority", "1", "u", "p"]).is_err());
        assert!(check(&["add_user", "-p", "v", "u", "p"]).is_err());
        assert!(check(&["add_user", "--no-table-headers", "u", "p"]).is_err());
        assert!(check(&["list_connections", "-p", "v"]).is_ok());
        assert!(check(&["list_queues", "--no-table-headers"]).is_ok());
        let f = check(&["purge_queue", "--apply-to", "all", "q"]).unwrap_err();
        assert!(f.render(&[], false).contains("--apply-to : all"));
    }

    /// federation_status takes --only-down (a flag, shown without a value); other commands
    /// refuse it. The plugin status commands take -p and ignore it, as rabbitmqctl; it is not
    /// in their usage line.
    #[test]
    fn plugin_status_options() {
        assert!(check(&["federation_status", "--only-down"]).is_ok());
        assert!(check(&["shovel_status", "--only-down"]).is_err());
        assert!(check(&["shovel_status", "-p", "v"]).is_ok());
        assert!(check(&["federation_status", "-p", "v"]).is_ok());
        assert!(check(&["set_parameter", "shovel", "s"]).is_err());
        assert!(check(&["clear_parameter", "-p", "v", "shovel", "s"]).is_ok());
        let usage = find("federation_status").unwrap().usage();
        assert!(
            usage.contains("federation_status [--only-down] [--timeout"),
            "{usage}"
        );
        assert!(!find("shovel_status").unwrap().usage().contains("--vhost"));
        assert!(find("list_parameters")
            .unwrap()
            .usage()
            .contains("[--vhost <vhost>] [--no-table-headers]"));
    }

    /// Every command has a unique name and a usage line naming it.
    #[test]
    fn table_is_consistent() {
        for (i, s) in COMMANDS.iter().enumerate() {
            assert!(
                !COMMANDS[..i].iter().any(|o| o.name == s.name),
                "{}",
                s.name
            );
            assert!(s.usage().contains(s.name));
            assert!(s.max_args.is_none_or(|m| m >= s.min_args), "{}", s.name);
        }
    }
}
