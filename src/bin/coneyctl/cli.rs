//! The command line as rabbitmqctl reads it: options may come before or after the command,
//! `--opt value` or `--opt=value`, `--` ends the options, a lone `-` is an argument (standard
//! input or output). rabbitmqctl's output options (-p/--vhost, -q, -s, --no-table-headers,
//! --formatter, -t/--timeout), rabbitmqadmin's endpoint options (--host, --port, --username,
//! --password; -V as a second name for --vhost) and set_policy's and the definitions
//! commands' own options. Which command takes which option is checked by `commands`.

use crate::endpoint::EndpointFlags;
use crate::failure::Failure;

/// rabbitmqctl's default operation timeout.
pub const TIMEOUT_DEFAULT_SECS: u64 = 60;
/// A day: longer is a typo, and Duration arithmetic stays far from overflow.
pub const TIMEOUT_MAX_SECS: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formatter {
    #[default]
    Table,
    Json,
}

/// Options given on the command line, before any command looked at them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// -p/--vhost/-V; None: the default vhost `/` (or, for node-wide listings, every vhost).
    pub vhost: Option<String>,
    pub quiet: bool,
    pub silent: bool,
    pub no_table_headers: bool,
    pub formatter: Formatter,
    pub timeout_secs: Option<u64>,
    pub endpoint: EndpointFlags,
    pub help: bool,
    /// Command-specific options as (name, value), checked by the command.
    pub specific: Vec<(&'static str, String)>,
}

impl Options {
    pub fn vhost(&self) -> &str {
        self.vhost.as_deref().unwrap_or("/")
    }

    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs.unwrap_or(TIMEOUT_DEFAULT_SECS)
    }

    /// Informational lines are printed (rabbitmqctl: not with -q, -s or a JSON formatter).
    pub fn informative(&self) -> bool {
        !(self.quiet || self.silent) && self.formatter == Formatter::Table
    }

    pub fn specific(&self, name: &str) -> Option<&str> {
        self.specific
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub options: Options,
    /// The first argument that is not an option.
    pub command: Option<String>,
    pub args: Vec<String>,
}

/// Options that take a value: (long name, short name or "", whether command-specific).
const VALUED: &[(&str, &str, bool)] = &[
    ("vhost", "-p", false),
    ("vhost", "-V", false),
    ("formatter", "", false),
    ("timeout", "-t", false),
    ("host", "-H", false),
    ("port", "-P", false),
    ("username", "-u", false),
    ("password", "", false),
    ("config", "", false),
    ("priority", "", true),
    ("apply-to", "", true),
    ("format", "", true),
];

/// rabbitmqctl options that make no sense for a tool speaking to the management API.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "--node",
        "-n",
        "coneyctl talks to the management API, not to an Erlang node: use --host and --port",
    ),
    (
        "--longnames",
        "-l",
        "coneyctl talks to the management API, not to an Erlang node; there are no node names",
    ),
    (
        "--erlang-cookie",
        "",
        "coneyctl authenticates with --username and --password",
    ),
];

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, Failure> {
    let mut options = Options::default();
    let mut positional = Vec::new();
    let mut unknown = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if arg == "-" || !arg.starts_with('-') {
            positional.push(arg.clone());
            continue;
        }
        if let Some((_, _, why)) = REFUSED
            .iter()
            .find(|(long, short, _)| arg == long || (!short.is_empty() && arg == short))
        {
            return Err(Failure::usage(format!("{arg}: {why}")));
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-q" | "--quiet" => options.quiet = true,
            "-s" | "--silent" => options.silent = true,
            "--no-table-headers" => options.no_table_headers = true,
            // federation_status's flag, kept as a command-specific option so that the
            // command table decides which command takes it.
            "--only-down" => options.specific.push(("only-down", "true".into())),
            "-?" | "-h" | "--help" => options.help = true,
            _ => {
                let Some(&(name, _, specific)) = VALUED.iter().find(|(long, short, _)| {
                    flag.strip_prefix("--") == Some(long) || flag == *short
                }) else {
                    unknown.push(arg.clone());
                    continue;
                };
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            Failure::usage(format!("option {flag} needs a value"))
                        })?;
                        i += 1;
                        v
                    }
                };
                if specific {
                    options.specific.push((name, value));
                } else {
                    set_valued(&mut options, name, flag, value)?;
                }
            }
        }
    }
    if !unknown.is_empty() {
        let listed: Vec<String> = unknown.iter().map(|u| format!("{u} : ")).collect();
        return Err(Failure::usage(format!(
            "Invalid options for this command:\n{}",
            listed.join("\n")
        )));
    }
    let mut positional = positional.into_iter();
    Ok(Invocation {
        options,
        command: positional.next(),
        args: positional.collect(),
    })
}

fn set_valued(options: &mut Options, name: &str, flag: &str, value: String) -> Result<(), Failure> {
    match name {
        "vhost" => options.vhost = Some(value),
        "formatter" => {
            options.formatter = match value.as_str() {
                "table" => Formatter::Table,
                "json" => Formatter::Json,
                other => {
                    return Err(Failure::usage(format!(
                        "formatter '{other}' is not supported by coneyctl (supported: table, json)"
                    )))
                }
            }
        }
        "timeout" => {
            let secs = value
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=TIMEOUT_MAX_SECS).contains(s))
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "{flag}: '{value}' is not a whole number of seconds from 1 to {TIMEOUT_MAX_SECS}"
                    ))
                })?;
            options.timeout_secs = Some(secs);
        }
        "host" => options.endpoint.host = Some(value),
        "port" => {
            let port = value
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| Failure::usage(format!("{flag}: '{value}' is not a port")))?;
            options.endpoint.port = Some(port);
        }
        "username" => options.endpoint.username = Some(value),
        "password" => options.endpoint.password = Some(value),
        "config" => options.endpoint.config = Some(value),
        _ => unreachable!("every valued option is handled: {name}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &[&str]) -> Result<Invocation, Failure> {
        parse(&s.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    /// Options may precede or follow the command, in both `--opt value` and `--opt=value`.
    #[test]
    fn options_anywhere() {
        let inv = parse_str(&[
            "-q",
            "list_queues",
            "name",
            "--vhost=v1",
            "messages",
            "--formatter",
            "json",
            "-t",
            "5",
        ])
        .unwrap();
        assert_eq!(inv.command.as_deref(), Some("list_queues"));
        assert_eq!(inv.args, ["name", "messages"]);
        assert!(inv.options.quiet);
        assert_eq!(inv.options.vhost(), "v1");
        assert_eq!(inv.options.formatter, Formatter::Json);
        assert_eq!(inv.options.timeout_secs(), 5);
        assert!(!inv.options.informative());
    }

    /// rabbitmqadmin's endpoint flags, -p as the vhost (rabbitmqctl's meaning) and -V too.
    #[test]
    fn endpoint_flags() {
        let inv = parse_str(&[
            "-H",
            "h",
            "-P",
            "15673",
            "-u",
            "admin",
            "--password",
            "pw",
            "-V",
            "v2",
            "status",
        ])
        .unwrap();
        let e = &inv.options.endpoint;
        assert_eq!(e.host.as_deref(), Some("h"));
        assert_eq!(e.port, Some(15673));
        assert_eq!(e.username.as_deref(), Some("admin"));
        assert_eq!(e.password.as_deref(), Some("pw"));
        assert_eq!(inv.options.vhost(), "v2");
        assert_eq!(
            parse_str(&["-p", "v3", "status"]).unwrap().options.vhost(),
            "v3"
        );
    }

    /// Empty strings, a lone `-` and everything after `--` are arguments.
    #[test]
    fn positional_edge_cases() {
        let inv = parse_str(&["set_permissions", "u", "^a", ".*", ""]).unwrap();
        assert_eq!(inv.args, ["u", "^a", ".*", ""]);
        let inv = parse_str(&["export_definitions", "-"]).unwrap();
        assert_eq!(inv.args, ["-"]);
        let inv = parse_str(&["set_policy", "--", "-p", "^q", "{}"]).unwrap();
        assert_eq!(inv.args, ["-p", "^q", "{}"]);
        assert_eq!(inv.options.vhost, None);
    }

    /// Command-specific options are collected for the command to check.
    #[test]
    fn specific_options() {
        let inv = parse_str(&[
            "set_policy",
            "--priority",
            "3",
            "--apply-to=queues",
            "p",
            "^q",
            "{}",
        ])
        .unwrap();
        assert_eq!(inv.options.specific("priority"), Some("3"));
        assert_eq!(inv.options.specific("apply-to"), Some("queues"));
        assert_eq!(inv.args, ["p", "^q", "{}"]);
    }

    /// Unknown options, rabbitmqctl's node options, bad values and a missing value are
    /// usage errors (exit 64), never ignored.
    #[test]
    fn refusals() {
        for bad in [
            &["list_queues", "--bogus"][..],
            &["-n", "rabbit@h", "list_queues"],
            &["--longnames", "status"],
            &["--formatter", "csv", "list_queues"],
            &["--timeout", "0", "status"],
            &["--timeout", "abc", "status"],
            &["--port", "99999", "status"],
            &["status", "--vhost"],
        ] {
            let f = parse_str(bad).unwrap_err();
            assert_eq!(f.exit_code(), 64, "{bad:?}");
        }
        let f = parse_str(&["list_queues", "--bogus"]).unwrap_err();
        assert!(f
            .render(&[], false)
            .contains("Invalid options for this command:\n--bogus : "));
    }

    /// Help flags are recognised wherever they appear.
    #[test]
    fn help_flags() {
        for h in ["-?", "-h", "--help"] {
            assert!(parse_str(&["list_queues", h]).unwrap().options.help);
        }
    }
}
