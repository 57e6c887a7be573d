//! Why a coneyctl run failed, with rabbitmqctl's exit codes (sysexits, as in RabbitMQ's
//! `RabbitMQ.CLI.Core.ExitCodes`) and the text printed on stderr. Owns the mapping from a
//! failure to its exit code and its wording; the commands only pick the kind.

use std::fmt;

/// Bad command line: unknown command, option or column, wrong number of arguments.
pub const EX_USAGE: u8 = 64;
/// Bad input data: a vhost that does not exist for some commands, an unreadable file.
pub const EX_DATAERR: u8 = 65;
/// rabbitmqctl's code for "user does not exist".
pub const EX_NOUSER: u8 = 67;
/// The API cannot be reached, refused the login, or refused the operation.
pub const EX_UNAVAILABLE: u8 = 69;
/// The server answered something coneyctl cannot use (or rabbitmqctl's code for "exists").
pub const EX_SOFTWARE: u8 = 70;
/// The operation did not finish within --timeout.
pub const EX_TEMPFAIL: u8 = 75;
/// The config file named by --config cannot be read.
pub const EX_CONFIG: u8 = 78;

/// A failed run: what to print on stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// rabbitmqctl's argument validation error: message, then the arguments and the usage.
    Usage {
        message: String,
        usage: Option<String>,
        /// 64, or 65 for a bad argument value (a file that does not exist).
        code: u8,
    },
    /// An operation failed: printed as `Error:` and the text on the next line.
    Error { code: u8, text: String },
    /// Printed as is, without `Error:` (rabbitmqctl does this for a missing vhost).
    Bare { code: u8, text: String },
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage {
            message: message.into(),
            usage: None,
            code: EX_USAGE,
        }
    }

    /// rabbitmqctl's "Bad argument" validation failure (exit 65).
    pub fn bad_argument(message: impl std::fmt::Display) -> Failure {
        Failure::Usage {
            message: format!("Bad argument: {message}"),
            usage: None,
            code: EX_DATAERR,
        }
    }

    pub fn error(code: u8, text: impl Into<String>) -> Failure {
        Failure::Error {
            code,
            text: text.into(),
        }
    }

    pub fn bare(code: u8, text: impl Into<String>) -> Failure {
        Failure::Bare {
            code,
            text: text.into(),
        }
    }

    /// The same usage failure with the command's usage line attached.
    pub fn with_usage(self, line: &str) -> Failure {
        match self {
            Failure::Usage { message, code, .. } => Failure::Usage {
                message,
                usage: Some(line.to_string()),
                code,
            },
            other => other,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage { code, .. } => *code,
            Failure::Error { code, .. } | Failure::Bare { code, .. } => *code,
        }
    }

    /// The text for stderr; `args` are the arguments given, `bold` wraps section titles in
    /// the terminal's bold as rabbitmqctl does.
    pub fn render(&self, args: &[String], bold: bool) -> String {
        match self {
            Failure::Usage { message, usage, .. } => {
                let mut s = format!(
                    "Error (argument validation): {message}\nArguments given:\n\t{}\n",
                    args.join(" ")
                );
                if let Some(line) = usage {
                    let title = if bold { "\x1b[1mUsage\x1b[0m" } else { "Usage" };
                    s.push_str(&format!("\n{title}\n\n{line}\n"));
                }
                s
            }
            Failure::Error { text, .. } => format!("Error:\n{text}\n"),
            Failure::Bare { text, .. } => format!("{text}\n"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&[], false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A usage failure renders as rabbitmqctl's argument validation error.
    #[test]
    fn usage_failure_renders_like_rabbitmqctl() {
        let f = Failure::usage("not enough arguments.")
            .with_usage("coneyctl add_user <username> <password>");
        let args = vec!["add_user".to_string()];
        assert_eq!(
            f.render(&args, false),
            "Error (argument validation): not enough arguments.\nArguments given:\n\tadd_user\n\n\
             Usage\n\nconeyctl add_user <username> <password>\n"
        );
        assert_eq!(f.exit_code(), EX_USAGE);
        assert_eq!(
            Failure::bad_argument("File x does not exist").exit_code(),
            65
        );
    }

    /// An operation error has rabbitmqctl's `Error:` line; a bare one does not.
    #[test]
    fn error_and_bare_render() {
        let e = Failure::error(EX_NOUSER, "User \"x\" does not exist");
        assert_eq!(e.render(&[], false), "Error:\nUser \"x\" does not exist\n");
        assert_eq!(e.exit_code(), 67);
        let b = Failure::bare(EX_DATAERR, "Virtual host 'v' does not exist");
        assert_eq!(b.render(&[], true), "Virtual host 'v' does not exist\n");
        assert_eq!(b.exit_code(), 65);
    }
}
