//! `help`, `--help` and the answer to an unknown command, in rabbitmqctl's layout: a usage
//! line, the commands by group, a command's arguments and columns, the general options, and
//! how coneyctl finds the management API.

use super::{listing, Ctx, Group, Spec, COMMANDS};
use crate::failure::{Failure, EX_USAGE};
use std::io::IsTerminal;

/// Section titles in bold, as rabbitmqctl, but only on a terminal.
pub fn bold() -> bool {
    std::io::stdout().is_terminal()
}

fn title(text: &str, bold: bool) -> String {
    if bold {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

const GROUPS: &[(Group, &str)] = &[
    (Group::Help, "Help"),
    (Group::Users, "Users"),
    (Group::AccessControl, "Access Control"),
    (
        Group::Monitoring,
        "Monitoring, observability and health checks",
    ),
    (Group::Parameters, "Parameters"),
    (Group::Policies, "Policies"),
    (Group::VirtualHosts, "Virtual hosts"),
    (Group::Definitions, "Definitions"),
    (Group::Operations, "Operations"),
    (Group::Queues, "Queues"),
    (Group::Federation, "Federation plugin"),
    (Group::Shovel, "Shovel plugin"),
];

const GENERAL_OPTIONS: &str = "\
The following options are accepted by most or all commands.

short            | long          | description
-----------------|---------------|--------------------------------
-?, -h           | --help        | displays command help
-H <host>        | --host        | management API host (default 127.0.0.1)
-P <port>        | --port        | management API port (default 15672)
-u <username>    | --username    | user for the API (default guest)
                 | --password    | its password (default guest)
                 | --config      | broker config file to read the API's address and
                 |               | default_user/default_pass from (default /etc/coney/coney.conf)
-t <n>           | --timeout <n> | operation timeout in seconds (default 60)
-q               | --quiet       | suppress informational messages
-s               | --silent      | suppress informational messages
                                 | and table header row
-p, -V           | --vhost       | for commands that are scoped to a virtual host,
                 |               | virtual host to use
                 | --formatter   | alternative result formatter to use: json or table

Environment: CONEYCTL_URL=http://user:password@host:port/ is used for what the options
do not give. Without either, the config file's management.tcp.ip and management.tcp.port
(default_user and default_pass for the login) are used, then 127.0.0.1:15672 guest/guest.
";

fn general_usage() -> &'static str {
    "coneyctl [--host <host>] [--port <port>] [--username <username>] [--password <password>] \
     [--timeout <timeout>] [--quiet] <command> [<command options>]"
}

/// The text of `coneyctl help`.
pub fn general_help(bold: bool) -> String {
    let mut s = format!("\n{}\n\n{}\n\n", title("Usage", bold), general_usage());
    s.push_str(
        "coneyctl does what rabbitmqctl does, with rabbitmqctl's output, through the \
         management HTTP API\nof coney or RabbitMQ.\n\nAvailable commands:\n\n",
    );
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0) + 2;
    for (group, name) in GROUPS {
        s.push_str(&format!("{}:\n\n", title(name, bold)));
        for c in COMMANDS.iter().filter(|c| c.group == *group) {
            s.push_str(&format!("   {:width$}{}\n", c.name, c.summary));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "{}\n\n{GENERAL_OPTIONS}\n",
        title("General Options", bold)
    ));
    s.push_str("Use 'coneyctl help <command>' to learn more about a specific command\n");
    s
}

/// The text of `coneyctl help COMMAND`.
pub fn command_help(spec: &Spec, bold: bool) -> String {
    let mut s = format!(
        "\n{}\n\n{}\n\n{}\n\n",
        title("Usage", bold),
        spec.usage(),
        spec.summary
    );
    if let Some(columns) = listing::offered(spec.name) {
        s.push_str(&format!(
            "\n{}\n\n<column>\n\tmust be one of {}\n\n",
            title("Arguments and Options", bold),
            columns.join(", ")
        ));
    }
    s.push_str(&format!(
        "\n{}\n\n{GENERAL_OPTIONS}",
        title("General Options", bold)
    ));
    s
}

/// rabbitmqctl's answer to a command it does not have (exit 64, on stderr).
pub fn unknown_command(name: &str) -> Failure {
    Failure::bare(
        EX_USAGE,
        format!(
            "\nCommand '{name}' not found. \n{}",
            general_help(std::io::stderr().is_terminal())
        ),
    )
}

pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let b = bold();
    let text = match args.first() {
        None => general_help(b),
        Some(name) => match super::find(name) {
            Some(spec) => command_help(spec, b),
            None => return Err(unknown_command(name)),
        },
    };
    ctx.out.raw(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general help lists every command once; a listing's help lists its columns.
    #[test]
    fn help_texts() {
        let g = general_help(false);
        for c in COMMANDS {
            assert_eq!(
                g.matches(&format!("   {} ", c.name)).count(),
                1,
                "{}",
                c.name
            );
        }
        let q = command_help(super::super::find("list_queues").unwrap(), false);
        assert!(q.contains("must be one of name, durable, auto_delete, arguments"));
        assert!(q.contains("[--vhost <vhost>]"));
        assert!(!q.contains("\x1b["));
        let p = command_help(super::super::find("set_policy").unwrap(), false);
        assert!(p.contains("[--priority <priority>] [--apply-to <apply-to>]"));
    }
}
