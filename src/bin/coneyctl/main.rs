//! `coneyctl`: rabbitmqctl's commands and output for coney (or RabbitMQ), through the
//! management HTTP API. Reads the command line, finds the API, runs the command and turns a
//! failure into rabbitmqctl's message and exit code. The broker's library is used only for
//! its config-file parser and base64; nothing in the broker uses this program's code.

mod api;
mod cell;
mod cli;
mod commands;
mod endpoint;
mod erlterm;
mod failure;
mod http;
mod output;

use failure::Failure;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let text = failure.render(&args, std::io::stderr().is_terminal());
            let _ = std::io::stderr().write_all(text.as_bytes());
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let inv = cli::parse(args)?;
    let Some(name) = inv.command.clone() else {
        if inv.options.help {
            print!(
                "{}",
                commands::general_help(std::io::stdout().is_terminal())
            );
            return Ok(());
        }
        return Err(Failure::usage("no command given (see 'coneyctl help')"));
    };
    let Some(spec) = commands::find(&name) else {
        return Err(commands::unknown_command(&name));
    };
    // `coneyctl CMD --help` is `coneyctl help CMD`.
    let (spec, args) = if inv.options.help {
        (
            commands::find("help").expect("help is a command"),
            vec![name],
        )
    } else {
        spec.check(&inv).map_err(|f| f.with_usage(&spec.usage()))?;
        (spec, inv.args.clone())
    };
    let help = spec.name == "help";
    let resolved = if help {
        // Help needs no API: nothing is read or contacted.
        endpoint::Resolved {
            target: http::Target {
                host: endpoint::DEFAULT_HOST.into(),
                port: endpoint::DEFAULT_PORT,
                username: endpoint::DEFAULT_USER.into(),
                password: endpoint::DEFAULT_USER.into(),
            },
            prefix: String::new(),
            notes: Vec::new(),
        }
    } else {
        let url = std::env::var(endpoint::URL_ENV).ok();
        endpoint::resolve(&inv.options.endpoint, url.as_deref())?
    };
    let timeout = Duration::from_secs(inv.options.timeout_secs());
    let mut ctx = commands::Ctx {
        command: spec.name,
        api: api::Api::new(
            resolved.target,
            resolved.prefix,
            resolved.notes,
            timeout,
            spec.name,
        ),
        out: output::Output::new(&inv.options, Box::new(std::io::stdout())),
        options: inv.options,
    };
    (spec.run)(&mut ctx, &args).map_err(|f| f.with_usage(&spec.usage()))
}
