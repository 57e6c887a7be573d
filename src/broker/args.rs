//! Queue and exchange arguments as RabbitMQ 3.10 checks them: a new queue's x- arguments are
//! validated once at declare (types, values, which queue type takes which argument, with
//! RabbitMQ's 406 texts) and parsed into `QueueArgs`, the typed fields the hot paths read; a
//! redeclare compares the arguments RabbitMQ compares. Unknown arguments are accepted and kept
//! (RabbitMQ does the same). The raw table stays with the queue for equivalence and storage.

use crate::error::{AmqpError, Show};
use crate::protocol::{FieldTable, FieldValue, ReplyCode};
use std::fmt::{self, Write};

/// The longest TTL or expiry RabbitMQ accepts (its ?MAX_EXPIRY_TIMER, ten years in ms).
pub(crate) const EXPIRY_MAX_MS: u64 = 315_360_000_000;
/// The highest x-max-priority RabbitMQ accepts.
const PRIORITY_MAX: i64 = 255;

/// x-queue-type. Streams are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    /// RabbitMQ's module name for the type, as its error texts show it.
    fn module(self) -> &'static str {
        match self {
            QueueType::Classic => "rabbit_classic_queue",
            QueueType::Quorum => "rabbit_quorum_queue",
        }
    }

    /// The arguments this type takes, in the order RabbitMQ compares them on redeclare.
    fn arguments(self) -> &'static [&'static str] {
        match self {
            QueueType::Classic => &CLASSIC_ARGS,
            QueueType::Quorum => &QUORUM_ARGS,
        }
    }
}

/// x-overflow: what a full queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Overflow {
    /// Drop (or dead-letter) the oldest ready message.
    #[default]
    DropHead,
    /// Refuse the new message: a confirming publisher gets basic.nack.
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

/// A queue's arguments as the broker acts on them, parsed once when it is declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueArgs {
    pub(crate) message_ttl_ms: Option<u64>,
    pub(crate) expires_ms: Option<u64>,
    pub(crate) dead_letter_exchange: Option<Box<[u8]>>,
    pub(crate) dead_letter_routing_key: Option<Box<[u8]>>,
    pub(crate) max_length: Option<u64>,
    pub(crate) max_length_bytes: Option<u64>,
    pub(crate) overflow: Overflow,
    pub(crate) max_priority: Option<u8>,
    pub(crate) single_active_consumer: bool,
    pub(crate) queue_type: QueueType,
    /// Quorum queues: a message returned more often than this is dead-lettered (reason
    /// delivery_limit). RabbitMQ compares the count with whatever value was given, so a
    /// negative limit dead-letters at the first return and a non-integer one never does.
    pub(crate) delivery_limit: Option<i64>,
    /// Ready messages a durable queue keeps in memory at most (below coney's window): 0 for
    /// x-queue-mode lazy, or a quorum queue's x-max-in-memory-length.
    pub(crate) in_memory_max: Option<u64>,
    /// Bytes of ready messages kept in memory at most (x-max-in-memory-bytes).
    pub(crate) in_memory_bytes_max: Option<u64>,
}

/// Arguments of classic queues (RabbitMQ 3.10's rabbit_classic_queue capabilities).
const CLASSIC_ARGS: [&str; 12] = [
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
];

/// Arguments of quorum queues (rabbit_quorum_queue capabilities).
const QUORUM_ARGS: [&str; 15] = [
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-message-ttl",
    "x-queue-leader-locator",
];

/// Arguments only streams take: refused by both types coney has.
const STREAM_ONLY_ARGS: [&str; 3] = [
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
];

/// How RabbitMQ checks a declared argument's value.
#[derive(Clone, Copy)]
enum Check {
    Expires,
    Ttl,
    NonNegative,
    /// x-quorum-initial-group-size: positive.
    Positive,
    MaxPriority,
    Dlx,
    DlxRoutingKey,
    Strings(&'static [&'static str], Mismatch),
    Bool,
}

/// The error for a string argument outside its allowed values.
#[derive(Clone, Copy)]
enum Mismatch {
    Atom(&'static str),
    Named(&'static str),
    /// RabbitMQ's own check crashes on this argument's bad values (541 INTERNAL_ERROR).
    Crash,
}

/// RabbitMQ 3.10's declare_args(): the value checks, in the order it applies them.
const VALIDATORS: [(&str, Check); 16] = [
    ("x-expires", Check::Expires),
    ("x-message-ttl", Check::Ttl),
    ("x-dead-letter-exchange", Check::Dlx),
    ("x-dead-letter-routing-key", Check::DlxRoutingKey),
    (
        "x-dead-letter-strategy",
        Check::Strings(
            &["at-most-once", "at-least-once"],
            Mismatch::Atom("invalid_dlx_strategy"),
        ),
    ),
    ("x-max-length", Check::NonNegative),
    ("x-max-length-bytes", Check::NonNegative),
    ("x-max-in-memory-length", Check::NonNegative),
    ("x-max-in-memory-bytes", Check::NonNegative),
    ("x-max-priority", Check::MaxPriority),
    (
        "x-overflow",
        Check::Strings(
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            Mismatch::Atom("invalid_overflow"),
        ),
    ),
    (
        "x-queue-mode",
        Check::Strings(&["default", "lazy"], Mismatch::Named("queue mode")),
    ),
    ("x-single-active-consumer", Check::Bool),
    ("x-quorum-initial-group-size", Check::Positive),
    (
        "x-queue-leader-locator",
        Check::Strings(
            &["client-local", "balanced", "random", "least-leaders"],
            Mismatch::Atom("invalid_queue_locator_arg"),
        ),
    ),
    (
        "x-queue-master-locator",
        Check::Strings(&["client-local", "min-masters", "random"], Mismatch::Crash),
    ),
];

/// A value as RabbitMQ prints it in an equivalence error (~s for binaries, ~p otherwise).
struct Val<'a>(&'a FieldValue<'a>);

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.0.as_integer() {
            return write!(f, "{i}");
        }
        match self.0 {
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::LongStr(s) | FieldValue::Bytes(s) => write!(f, "{}", Show(s)),
            FieldValue::F32(x) => write!(f, "{x:?}"),
            FieldValue::F64(x) => write!(f, "{x:?}"),
            FieldValue::Timestamp(t) => write!(f, "{t}"),
            FieldValue::Decimal { scale, value } => write!(f, "{{{scale},{value}}}"),
            FieldValue::Void => write!(f, "undefined"),
            FieldValue::Array(a) => write!(f, "{a:?}"),
            FieldValue::Table(t) => write!(f, "{t:?}"),
            _ => Ok(()),
        }
    }
}

fn invalid_arg(vhost: &str, key: &str, queue: &[u8], detail: impl fmt::Display) -> AmqpError {
    AmqpError::precondition(format_args!(
        "invalid arg '{key}' for queue '{}' in vhost '{vhost}': {detail}",
        Show(queue)
    ))
}

fn not_for_type(vhost: &str, key: &[u8], queue: &[u8], t: QueueType) -> AmqpError {
    AmqpError::precondition(format_args!(
        "invalid arg '{}' for queue '{}' in vhost '{vhost}' of queue type {}",
        Show(key),
        Show(queue),
        t.module()
    ))
}

/// RabbitMQ's answer where its own code crashes on a bad value: 541 with no detail.
fn internal_error() -> AmqpError {
    AmqpError {
        code: ReplyCode::InternalError,
        text: "INTERNAL_ERROR".into(),
    }
}

/// The queue type an argument table names; None for `stream` or an unknown type.
fn declared_type(args: FieldTable<'_>) -> Result<QueueType, Option<&[u8]>> {
    match args.get(b"x-queue-type") {
        None => Ok(QueueType::Classic),
        Some(FieldValue::LongStr(b"classic")) => Ok(QueueType::Classic),
        Some(FieldValue::LongStr(b"quorum")) => Ok(QueueType::Quorum),
        Some(FieldValue::LongStr(other)) => Err(Some(other)),
        Some(_) => Err(None),
    }
}

/// queue.declare with an empty name: RabbitMQ names only classic queues itself.
pub(crate) fn check_server_named(args: FieldTable<'_>) -> Result<(), AmqpError> {
    match declared_type(args) {
        Ok(QueueType::Classic) => Ok(()),
        Ok(QueueType::Quorum) => Err(AmqpError::precondition(
            "Cannot declare a server-named queue for type rabbit_quorum_queue",
        )),
        Err(Some(b"stream")) => Err(AmqpError::precondition(
            "Cannot declare a server-named queue for type rabbit_stream_queue",
        )),
        Err(_) => Err(internal_error()),
    }
}

/// The flags of queue.declare that quorum queues restrict.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeclaredFlags {
    pub(crate) durable: bool,
    pub(crate) exclusive: bool,
    pub(crate) auto_delete: bool,
}

impl QueueArgs {
    /// Checks a new queue's arguments in RabbitMQ 3.10's order (the dead-letter exchange's
    /// type; x-queue-type; each value the type takes; arguments of another type; what a quorum
    /// queue refuses) and parses them. `vhost` is the queue's, for the error texts.
    pub(crate) fn declare(
        vhost: &str,
        queue: &[u8],
        args: FieldTable<'_>,
        flags: DeclaredFlags,
    ) -> Result<QueueArgs, AmqpError> {
        if let Some(v) = args.get(b"x-dead-letter-exchange") {
            if !matches!(v, FieldValue::LongStr(_)) {
                return Err(AmqpError::precondition(format_args!(
                    "invalid type '{}' for arg 'x-dead-letter-exchange' in queue '{}' in vhost '{vhost}'",
                    v.type_name(),
                    Show(queue)
                )));
            }
        }
        let queue_type = match declared_type(args) {
            Ok(t) => t,
            Err(Some(name)) => {
                let detail = format!("unsupported queue type '{}'", Show(name));
                return Err(invalid_arg(vhost, "x-queue-type", queue, Quoted(&detail)));
            }
            Err(None) => {
                let v = args.get(b"x-queue-type").unwrap_or(FieldValue::Void);
                let detail = format!("{{unacceptable_type,{}}}", v.type_name());
                return Err(invalid_arg(vhost, "x-queue-type", queue, detail));
            }
        };
        let taken = queue_type.arguments();
        for (key, check) in VALIDATORS {
            if !taken.contains(&key) {
                continue;
            }
            if let Some(v) = args.get(key.as_bytes()) {
                check_value(&v, check, args).map_err(|d| match d {
                    Detail::Crash => internal_error(),
                    d => invalid_arg(vhost, key, queue, d),
                })?;
            }
        }
        for (key, _) in args.iter() {
            let known = |list: &[&str]| list.iter().any(|k| k.as_bytes() == key);
            let elsewhere = known(&CLASSIC_ARGS) || known(&QUORUM_ARGS) || known(&STREAM_ONLY_ARGS);
            if elsewhere && !known(taken) {
                return Err(not_for_type(vhost, key, queue, queue_type));
            }
        }
        if queue_type == QueueType::Quorum {
            check_quorum_flags(vhost, queue, flags)?;
        }
        Ok(QueueArgs::parse(args))
    }

    /// Reads arguments that were checked when the queue was declared (also at recovery).
    pub(crate) fn parse(args: FieldTable<'_>) -> QueueArgs {
        let int = |k: &str| {
            args.get(k.as_bytes())
                .as_ref()
                .and_then(FieldValue::as_integer)
        };
        let unsigned = |k: &str| int(k).and_then(|v| u64::try_from(v).ok());
        let string = |k: &str| match args.get(k.as_bytes()) {
            Some(FieldValue::LongStr(s)) => Some(Box::<[u8]>::from(s)),
            _ => None,
        };
        let overflow = match args.get(b"x-overflow") {
            Some(FieldValue::LongStr(b"reject-publish")) => Overflow::RejectPublish,
            Some(FieldValue::LongStr(b"reject-publish-dlx")) => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        let queue_type = declared_type(args).unwrap_or_default();
        QueueArgs {
            message_ttl_ms: unsigned("x-message-ttl"),
            expires_ms: unsigned("x-expires").filter(|&v| v > 0),
            dead_letter_exchange: string("x-dead-letter-exchange"),
            dead_letter_routing_key: string("x-dead-letter-routing-key"),
            max_length: unsigned("x-max-length"),
            max_length_bytes: unsigned("x-max-length-bytes"),
            overflow,
            max_priority: unsigned("x-max-priority")
                .filter(|_| queue_type == QueueType::Classic)
                .map(|p| p.min(PRIORITY_MAX as u64) as u8),
            single_active_consumer: matches!(
                args.get(b"x-single-active-consumer"),
                Some(FieldValue::Bool(true))
            ),
            queue_type,
            delivery_limit: if queue_type == QueueType::Quorum {
                int("x-delivery-limit")
            } else {
                None
            },
            in_memory_max: match args.get(b"x-queue-mode") {
                Some(FieldValue::LongStr(b"lazy")) => Some(0),
                _ => unsigned("x-max-in-memory-length"),
            },
            in_memory_bytes_max: unsigned("x-max-in-memory-bytes"),
        }
    }
}

/// What quorum queues refuse among the declare flags, in RabbitMQ's order.
fn check_quorum_flags(vhost: &str, queue: &[u8], flags: DeclaredFlags) -> Result<(), AmqpError> {
    let property = if flags.auto_delete {
        "auto-delete"
    } else if flags.exclusive {
        "exclusive-owner"
    } else if !flags.durable {
        "non-durable"
    } else {
        return Ok(());
    };
    Err(AmqpError::precondition(format_args!(
        "invalid property '{property}' for queue '{}' in vhost '{vhost}'",
        Show(queue)
    )))
}

/// Why a value was refused, printed as RabbitMQ's ~p prints its error term.
enum Detail {
    /// An Erlang string: printed in double quotes.
    Text(String),
    /// An Erlang term printed as is.
    Term(String),
    /// RabbitMQ crashes (541) on this value.
    Crash,
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Text(s) => Quoted(s).fmt(f),
            Detail::Term(s) => f.write_str(s),
            Detail::Crash => Ok(()),
        }
    }
}

/// A string as Erlang's ~p shows it: in double quotes, with `"` and `\` escaped.
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        f.write_char('"')
    }
}

fn check_value(v: &FieldValue<'_>, check: Check, args: FieldTable<'_>) -> Result<(), Detail> {
    let unacceptable = || Detail::Term(format!("{{unacceptable_type,{}}}", v.type_name()));
    let int = || {
        v.as_integer()
            .ok_or_else(|| Detail::Text(format!("expected integer, got {}", v.type_name())))
    };
    let term = |t: String| Err(Detail::Term(t));
    match check {
        Check::Expires | Check::Ttl => {
            let n = int()?;
            if matches!(check, Check::Expires) && n == 0 {
                return term(format!("{{value_zero,{n}}}"));
            }
            check_expiry(n).map_err(Detail::Term)
        }
        Check::NonNegative | Check::Positive | Check::MaxPriority => {
            let n = int()?;
            if n < 0 {
                term(format!("{{value_negative,{n}}}"))
            } else if matches!(check, Check::Positive) && n == 0 {
                term(format!("{{value_zero,{n}}}"))
            } else if matches!(check, Check::MaxPriority) && n > PRIORITY_MAX {
                term(format!("{{max_value_exceeded,{n}}}"))
            } else {
                Ok(())
            }
        }
        Check::Dlx => match v {
            FieldValue::LongStr(_) => Ok(()),
            _ => Err(unacceptable()),
        },
        Check::DlxRoutingKey => match v {
            FieldValue::LongStr(_) if args.get(b"x-dead-letter-exchange").is_none() => {
                term("routing_key_but_no_dlx_defined".into())
            }
            FieldValue::LongStr(_) => Ok(()),
            _ => Err(unacceptable()),
        },
        Check::Bool => match v {
            FieldValue::Bool(_) => Ok(()),
            _ => Err(unacceptable()),
        },
        Check::Strings(allowed, mismatch) => {
            let s = match (v, mismatch) {
                (FieldValue::LongStr(s), _) => *s,
                (_, Mismatch::Crash) => return Err(Detail::Crash),
                _ => return Err(unacceptable()),
            };
            if allowed.iter().any(|a| a.as_bytes() == s) {
                return Ok(());
            }
            match mismatch {
                Mismatch::Atom(a) => term(a.into()),
                Mismatch::Crash => Err(Detail::Crash),
                Mismatch::Named(what) => {
                    Err(Detail::Text(format!("unsupported {what} '{}'", Show(s))))
                }
            }
        }
    }
}

/// RabbitMQ's check_expiry: a TTL or expiry in ms within 0..=EXPIRY_MAX_MS.
pub(crate) fn check_expiry(n: i64) -> Result<(), String> {
    if n > EXPIRY_MAX_MS as i64 {
        Err(format!("{{value_too_large,{n}}}"))
    } else if n < 0 {
        Err(format!("{{value_negative,{n}}}"))
    } else {
        Ok(())
    }
}

/// Whether two argument values are equal as RabbitMQ compares them: integers of any width
/// by value, everything else by type and value.
fn same_value(a: &FieldValue<'_>, b: &FieldValue<'_>) -> bool {
    match (a.as_integer(), b.as_integer()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// One side of an equivalence error: "none", or the value with its type when the other side
/// is missing (RabbitMQ's rabbit_misc:val/1).
struct Side<'a>(Option<&'a FieldValue<'a>>, bool);

impl fmt::Display for Side<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(v) if self.1 => write!(f, "'{}'", Val(v)),
            Some(v) => write!(f, "the value '{}' of type '{}'", Val(v), v.type_name()),
        }
    }
}

/// A redeclare: the arguments the queue's type takes must be equivalent to the current ones
/// (x-queue-type "classic" and no x-queue-type are the same).
pub(crate) fn check_equivalent(
    vhost: &str,
    queue: &[u8],
    current: FieldTable<'_>,
    received: FieldTable<'_>,
) -> Result<(), AmqpError> {
    let queue_type = declared_type(current).unwrap_or_default();
    for key in queue_type.arguments() {
        let k = key.as_bytes();
        let (c, r) = (current.get(k), received.get(k));
        let classic =
            |v: &Option<FieldValue<'_>>| matches!(v, None | Some(FieldValue::LongStr(b"classic")));
        if *key == "x-queue-type" && classic(&c) && classic(&r) {
            continue;
        }
        let equal = match (&c, &r) {
            (None, None) => true,
            (Some(a), Some(b)) => same_value(a, b),
            _ => false,
        };
        if !equal {
            let both = c.is_some() && r.is_some();
            return Err(AmqpError::precondition(format_args!(
                "inequivalent arg '{key}' for queue '{}' in vhost '{vhost}': received {} but current is {}",
                Show(queue),
                Side(r.as_ref(), both),
                Side(c.as_ref(), both)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::table::TableWriter;
    use crate::protocol::wire::Writer;

    fn flags() -> DeclaredFlags {
        DeclaredFlags {
            durable: true,
            exclusive: false,
            auto_delete: false,
        }
    }

    fn table(f: impl FnOnce(&mut TableWriter<'_, '_>)) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        let mut t = TableWriter::begin(&mut w);
        f(&mut t);
        t.finish();
        v[4..].to_vec()
    }

    fn declare(raw: &[u8]) -> Result<QueueArgs, String> {
        let t = FieldTable::parse(raw).expect("table");
        QueueArgs::declare("/", b"q", t, flags()).map_err(|e| e.text)
    }

    #[test]
    fn values_are_checked_in_rabbitmqs_order_before_other_types_arguments() {
        let raw = table(|t| {
            t.i64("x-delivery-limit", 5).i64("x-message-ttl", -1);
        });
        assert_eq!(
            declare(&raw),
            Err("PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}".into())
        );
        let raw = table(|t| {
            t.longstr("x-queue-type", b"quorum")
                .i64("x-max-priority", 300);
        });
        assert_eq!(
            declare(&raw),
            Err("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue".into())
        );
        let raw = table(|t| {
            t.longstr("x-overflow", b"nope");
        });
        assert_eq!(
            declare(&raw),
            Err("PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow".into())
        );
    }

    #[test]
    fn parsed_fields_follow_the_table() {
        let raw = table(|t| {
            t.i64("x-message-ttl", 1000)
                .longstr("x-dead-letter-exchange", b"dlx")
                .longstr("x-overflow", b"reject-publish-dlx")
                .i64("x-max-priority", 9)
                .bool("x-single-active-consumer", true)
                .longstr("x-unknown", b"kept");
        });
        let a = declare(&raw).expect("valid");
        assert_eq!(a.message_ttl_ms, Some(1000));
        assert_eq!(a.dead_letter_exchange.as_deref(), Some(&b"dlx"[..]));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.max_priority, Some(9));
        assert!(a.single_active_consumer);
        assert_eq!(a.queue_type, QueueType::Classic);
    }

    #[test]
    fn equivalence_compares_integers_by_value_and_names_both_sides() {
        let a = table(|t| {
            t.i64("x-max-length", 10);
        });
        let b = table(|t| {
            t.longstr("x-queue-type", b"classic")
                .i64("x-max-length", 10);
        });
        let none = table(|_| {});
        fn p(r: &[u8]) -> FieldTable<'_> {
            FieldTable::parse(r).expect("table")
        }
        assert_eq!(check_equivalent("/", b"q", p(&a), p(&b)), Ok(()));
        let e = check_equivalent("/", b"q", p(&a), p(&none)).expect_err("406");
        assert_eq!(e.text, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received none but current is the value '10' of type 'long'");
    }
}
