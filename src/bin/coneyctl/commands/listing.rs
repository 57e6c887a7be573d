//! The list_* commands: which API path each reads, its informational lines (rabbitmqctl
//! 3.10's, spaces and quotes included), the columns asked for (rabbitmqctl's info keys,
//! separated by spaces or commas), and what a missing vhost or user means for each (an empty
//! listing for queues, exchanges, bindings and consumers, as rabbitmqctl; an error for
//! permissions and policies). Rows come in the API's order (sorted by name).

use super::columns::{self as c, Column, Source};
use super::Ctx;
use crate::api::{seg, ApiError};
use crate::cell;
use crate::cli::Options;
use crate::failure::{Failure, EX_DATAERR, EX_UNAVAILABLE};
use crate::output::{EmptyShape, Row};
use serde_json::Value;

/// What a 404 from the listing's path means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMissing {
    /// The vhost does not exist: nothing to list.
    Empty,
    /// The vhost does not exist: rabbitmqctl's bare message, exit 65.
    NoVhost,
    /// The user does not exist: rabbitmqctl's `{:no_such_user, "name"}`, exit 69.
    NoUser,
}

struct Listing {
    command: &'static str,
    columns: &'static [Column],
    defaults: &'static [&'static str],
    not_in_api: &'static [&'static str],
    takes_columns: bool,
    /// Informational lines; `{vhost}`, `{user}` and `{timeout}` are filled in.
    info: &'static [&'static str],
    path: fn(&Options, &[String]) -> String,
    /// Ask the API for only the fields shown (`columns=`): for listings whose objects carry
    /// statistics that make the full answer large.
    narrow: bool,
    on_missing: OnMissing,
    empty: EmptyShape,
    /// The path lists every vhost's objects (the API has no per-vhost list of all runtime
    /// parameters): rows of other vhosts are left out, and since the path cannot answer 404
    /// for a missing vhost, the vhost is looked up first (`/vhosts/V`).
    every_vhost: bool,
}

fn in_vhost(prefix: &'static str) -> impl Fn(&Options) -> String {
    move |o| format!("/{prefix}/{}", seg(o.vhost()))
}

/// Node-wide unless -p names a vhost.
fn node_or_vhost(o: &Options, what: &str) -> String {
    match &o.vhost {
        Some(v) => format!("/vhosts/{}/{what}", seg(v)),
        None => format!("/{what}"),
    }
}

static LISTINGS: &[Listing] = &[
    Listing {
        command: "list_queues",
        columns: c::QUEUE,
        defaults: c::QUEUE_DEFAULT,
        not_in_api: c::QUEUE_NOT_IN_API,
        takes_columns: true,
        info: &[
            "Timeout: {timeout}.0 seconds ...",
            "Listing queues for vhost {vhost} ...",
        ],
        path: |o, _| in_vhost("queues")(o),
        narrow: true,
        on_missing: OnMissing::Empty,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_exchanges",
        columns: c::EXCHANGE,
        defaults: c::EXCHANGE_DEFAULT,
        not_in_api: &[],
        takes_columns: true,
        info: &["Listing exchanges for vhost {vhost} ..."],
        path: |o, _| in_vhost("exchanges")(o),
        narrow: true,
        on_missing: OnMissing::Empty,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_bindings",
        columns: c::BINDING,
        defaults: c::BINDING_DEFAULT,
        not_in_api: &[],
        takes_columns: true,
        info: &["Listing bindings for vhost {vhost}..."],
        path: |o, _| in_vhost("bindings")(o),
        narrow: false,
        on_missing: OnMissing::Empty,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_connections",
        columns: c::CONNECTION,
        defaults: c::CONNECTION_DEFAULT,
        not_in_api: &[],
        takes_columns: true,
        info: &["Listing connections ..."],
        path: |o, _| node_or_vhost(o, "connections"),
        narrow: true,
        on_missing: OnMissing::NoVhost,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_channels",
        columns: c::CHANNEL,
        defaults: c::CHANNEL_DEFAULT,
        not_in_api: &[],
        takes_columns: true,
        info: &["Listing channels ..."],
        path: |o, _| node_or_vhost(o, "channels"),
        narrow: true,
        on_missing: OnMissing::NoVhost,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_consumers",
        columns: c::CONSUMER,
        defaults: c::CONSUMER_DEFAULT,
        not_in_api: &[],
        takes_columns: true,
        info: &["Listing consumers in vhost {vhost} ..."],
        path: |o, _| in_vhost("consumers")(o),
        narrow: false,
        on_missing: OnMissing::Empty,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_users",
        columns: c::USER,
        defaults: c::USER_DEFAULT,
        not_in_api: &[],
        takes_columns: false,
        info: &["Listing users ..."],
        path: |_, _| "/users".into(),
        narrow: false,
        on_missing: OnMissing::Empty,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_vhosts",
        columns: c::VHOST,
        defaults: c::VHOST_DEFAULT,
        not_in_api: c::VHOST_NOT_IN_API,
        takes_columns: true,
        info: &["Listing vhosts ..."],
        path: |_, _| "/vhosts".into(),
        narrow: false,
        on_missing: OnMissing::Empty,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_permissions",
        columns: c::PERMISSION,
        defaults: c::PERMISSION_DEFAULT,
        not_in_api: &[],
        takes_columns: false,
        info: &["Listing permissions for vhost \"{vhost}\" ..."],
        path: |o, _| format!("/vhosts/{}/permissions", seg(o.vhost())),
        narrow: false,
        on_missing: OnMissing::NoVhost,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_user_permissions",
        columns: c::USER_PERMISSION,
        defaults: c::USER_PERMISSION_DEFAULT,
        not_in_api: &[],
        takes_columns: false,
        info: &["Listing permissions for user \"{user}\" ..."],
        path: |_, args| format!("/users/{}/permissions", seg(&args[0])),
        narrow: false,
        on_missing: OnMissing::NoUser,
        empty: EmptyShape::Nothing,
        every_vhost: false,
    },
    Listing {
        command: "list_policies",
        columns: c::POLICY,
        defaults: c::POLICY_DEFAULT,
        not_in_api: &[],
        takes_columns: false,
        info: &["Listing policies for vhost \"{vhost}\" ..."],
        path: |o, _| in_vhost("policies")(o),
        narrow: false,
        on_missing: OnMissing::NoVhost,
        empty: EmptyShape::BlankLine,
        every_vhost: false,
    },
    Listing {
        command: "list_parameters",
        columns: c::PARAMETER,
        defaults: c::PARAMETER_DEFAULT,
        not_in_api: &[],
        takes_columns: false,
        info: &["Listing runtime parameters for vhost \"{vhost}\" ..."],
        path: |_, _| "/parameters".into(),
        narrow: false,
        on_missing: OnMissing::NoVhost,
        empty: EmptyShape::BlankLine,
        every_vhost: true,
    },
];

fn listing(command: &str) -> &'static Listing {
    LISTINGS
        .iter()
        .find(|l| l.command == command)
        .unwrap_or_else(|| panic!("{command} is in the command table but has no listing"))
}

/// The columns a listing offers, for help.
pub fn offered(command: &str) -> Option<Vec<&'static str>> {
    let l = LISTINGS.iter().find(|l| l.command == command)?;
    l.takes_columns
        .then(|| l.columns.iter().map(|c| c.name).collect())
}

pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let l = listing(ctx.command);
    let columns = select(l, args)?;
    for line in l.info {
        let user = args.first().map(String::as_str).unwrap_or("");
        let text = line
            .replace("{vhost}", ctx.vhost())
            .replace("{user}", user)
            .replace("{timeout}", &ctx.options.timeout_secs().to_string());
        ctx.out.info(&text);
    }
    if l.every_vhost {
        let vhost = format!("/vhosts/{}", seg(ctx.vhost()));
        if let Err(e) = ctx.api.get(&vhost) {
            // Ok only for a listing that is empty in a missing vhost, which the filter
            // below makes empty.
            missing(ctx, l, args, e)?;
        }
    }
    let mut path = (l.path)(&ctx.options, args);
    if l.narrow {
        let mut fields: Vec<&str> = columns
            .iter()
            .filter_map(|c| c.source.api_field())
            .collect();
        fields.sort_unstable();
        fields.dedup();
        path.push_str(&format!("?columns={}", fields.join(",")));
    }
    let items = match ctx.api.get(&path) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return Err(Failure::error(
                crate::failure::EX_SOFTWARE,
                format!("GET {path} answered {other:.60} instead of a list"),
            ))
        }
        Err(e) => missing(ctx, l, args, e)?,
    };
    let items: Vec<Value> = if l.every_vhost {
        items
            .into_iter()
            .filter(|i| i.get("vhost").and_then(Value::as_str) == Some(ctx.vhost()))
            .collect()
    } else {
        items
    };
    let rows: Vec<Row> = items.iter().map(|item| row(item, &columns)).collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    ctx.out.listing(&names, &rows, l.empty);
    Ok(())
}

/// What an API error means for the listing: a 404 is the listing's missing vhost or user
/// (an empty listing for some); anything else fails as for every command.
fn missing(ctx: &Ctx, l: &Listing, args: &[String], e: ApiError) -> Result<Vec<Value>, Failure> {
    if e.status() != Some(404) {
        return Err(ctx.fail(e));
    }
    match l.on_missing {
        OnMissing::Empty => Ok(Vec::new()),
        OnMissing::NoVhost => Err(Failure::bare(
            EX_DATAERR,
            format!("Virtual host '{}' does not exist", ctx.vhost()),
        )),
        OnMissing::NoUser => Err(Failure::error(
            EX_UNAVAILABLE,
            format!("{{:no_such_user, \"{}\"}}", args[0]),
        )),
    }
}

fn row(item: &Value, columns: &[&Column]) -> Row {
    columns
        .iter()
        .map(|col| {
            let constant;
            let value = match col.source {
                Source::Field(f) => item.get(f),
                Source::Path(outer, inner) => item.get(outer).and_then(|o| o.get(inner)),
                Source::Const(text) => {
                    constant = Value::String(text.to_string());
                    Some(&constant)
                }
            };
            (
                cell::table_text(value, col.kind),
                cell::json_value(value, col.kind),
            )
        })
        .collect()
}

/// The columns asked for (spaces or commas between them), or the listing's defaults.
fn select(l: &Listing, args: &[String]) -> Result<Vec<&'static Column>, Failure> {
    let names: Vec<&str> = if l.takes_columns {
        args.iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let names = if names.is_empty() {
        l.defaults.to_vec()
    } else {
        names
    };
    let find = |n: &str| l.columns.iter().find(|c| c.name == n);
    let mut unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| find(n).is_none() && !l.not_in_api.contains(n))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        return Err(Failure::usage(format!(
            "Info key(s) {} are not supported",
            unknown.join(",")
        )));
    }
    let mut absent: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| l.not_in_api.contains(n))
        .collect();
    absent.sort_unstable();
    absent.dedup();
    if !absent.is_empty() {
        return Err(Failure::usage(format!(
            "Info key(s) {} are not available from the management API, so coneyctl cannot show them",
            absent.join(",")
        )));
    }
    Ok(names.iter().filter_map(|n| find(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(cols: &[&Column]) -> Vec<&'static str> {
        cols.iter().map(|c| c.name).collect()
    }

    /// Every list_* command of the table has a listing.
    #[test]
    fn every_listing_command_is_defined() {
        for spec in super::super::COMMANDS.iter().filter(|s| s.table) {
            assert!(
                LISTINGS.iter().any(|l| l.command == spec.name),
                "{}",
                spec.name
            );
        }
    }

    /// Default columns, columns by space or comma, and rabbitmqctl's error for unknown ones
    /// (sorted, comma-separated).
    #[test]
    fn column_selection() {
        let q = listing("list_queues");
        assert_eq!(names(&select(q, &[]).unwrap()), ["name", "messages"]);
        let args = ["name,durable".to_string(), "policy".to_string()];
        assert_eq!(
            names(&select(q, &args).unwrap()),
            ["name", "durable", "policy"]
        );
        let bad = ["foo".to_string(), "bar".to_string(), "name".to_string()];
        assert_eq!(
            select(q, &bad).unwrap_err(),
            Failure::usage("Info key(s) bar,foo are not supported")
        );
        let pid = ["pid".to_string()];
        assert!(select(q, &pid)
            .unwrap_err()
            .render(&[], false)
            .contains("not available from the management API"));
    }

    /// Rows take nested fields, constants and missing values (shown empty).
    #[test]
    fn rows_from_api_objects() {
        let b = listing("list_bindings");
        let cols = select(b, &[]).unwrap();
        let item = json!({"source": "ex1", "vhost": "/", "destination": "q1",
                          "destination_type": "queue", "routing_key": "a.*",
                          "arguments": {"k": "v"}});
        let r = row(&item, &cols);
        let table: Vec<&str> = r.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            table,
            ["ex1", "exchange", "q1", "queue", "a.*", r#"[{"k","v"}]"#]
        );
        let c = listing("list_consumers");
        let cols = select(c, &["queue_name".into(), "channel_pid".into()]).unwrap();
        let item = json!({"queue": {"name": "q2", "vhost": "/"},
                          "channel_details": {"name": "127.0.0.1:1 -> 127.0.0.1:2 (1)"}});
        let r = row(&item, &cols);
        assert_eq!(r[0].0, "q2");
        assert_eq!(r[1].0, "127.0.0.1:1 -> 127.0.0.1:2 (1)");
        let q = listing("list_queues");
        let cols = select(q, &["name".into(), "policy".into()]).unwrap();
        let r = row(&json!({"name": "q", "policy": null}), &cols);
        assert_eq!(r[1], (String::new(), "\"\"".to_string()));
    }

    /// Vhost-scoped paths encode the vhost; node-wide listings narrow to a vhost only when -p
    /// names one.
    #[test]
    fn paths() {
        let mut o = Options::default();
        assert_eq!((listing("list_queues").path)(&o, &[]), "/queues/%2F");
        assert_eq!((listing("list_connections").path)(&o, &[]), "/connections");
        o.vhost = Some("v 1".into());
        assert_eq!(
            (listing("list_connections").path)(&o, &[]),
            "/vhosts/v%201/connections"
        );
        assert_eq!(
            (listing("list_user_permissions").path)(&o, &["a/b".into()]),
            "/users/a%2Fb/permissions"
        );
    }
}
