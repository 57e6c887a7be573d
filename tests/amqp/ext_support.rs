//! Helpers for the tests of RabbitMQ's extensions (issue 10): argument tables, declares that
//! must fail with RabbitMQ's text, publishes whose confirm (ack or nack) and returns are
//! collected, header accessors (x-death), and bounded polls for the events a broker does not
//! announce (a message expiring, a queue being deleted).
//!
//! A note on polling queues with x-expires: on RabbitMQ a passive queue.declare counts as a
//! use and renews the queue's lease, so [`await_queue_expired`] probes with mandatory
//! publishes instead (publishing is not a use).
#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amqprs::channel::{
    BasicConsumeArguments, ExchangeBindArguments, ExchangeDeclareArguments, QueueDeclareArguments,
};
use amqprs::{BasicProperties, FieldArray, FieldTable, FieldValue};

use crate::support::*;

/// Poll interval of the bounded polls below.
pub const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------
// argument tables and header values
// ---------------------------------------------------------------------------------------

/// A field table from (name, value) pairs.
pub fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert((*k).try_into().unwrap(), v.clone());
    }
    t
}

/// A long-string field value ('S').
pub fn s(v: &str) -> FieldValue {
    FieldValue::from(v)
}

/// A signed 32-bit field value ('I'), the type most clients send for small numbers.
pub fn int(v: i32) -> FieldValue {
    FieldValue::I(v)
}

/// A signed 64-bit field value ('l').
pub fn long(v: i64) -> FieldValue {
    FieldValue::l(v)
}

/// A boolean field value ('t').
pub fn boolean(v: bool) -> FieldValue {
    FieldValue::t(v)
}

/// An array of long strings ('A' of 'S').
pub fn str_array(v: &[&str]) -> FieldValue {
    let items: Vec<FieldValue> = v.iter().map(|x| s(x)).collect();
    FieldValue::A(FieldArray::try_from(items).unwrap())
}

/// The value of header `key`, if the message has it.
pub fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a FieldValue> {
    props.headers()?.get(&key.try_into().unwrap())
}

/// The long-string header `key` (panics if it has another type).
pub fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    header(props, key).map(|v| as_str(v, key))
}

fn as_str(v: &FieldValue, what: &str) -> String {
    match v {
        FieldValue::S(s) => s.as_ref().clone(),
        other => panic!("{what} should be a long string ('S'), got {other:?}"),
    }
}

fn as_array(v: &FieldValue, what: &str) -> Vec<FieldValue> {
    match v {
        FieldValue::A(a) => a.clone().into(),
        other => panic!("{what} should be an array ('A'), got {other:?}"),
    }
}

/// Any integer field value as i64 (panics on other types).
pub fn as_int(v: &FieldValue, what: &str) -> i64 {
    match v {
        FieldValue::b(x) => *x as i64,
        FieldValue::B(x) => *x as i64,
        FieldValue::s(x) => *x as i64,
        FieldValue::u(x) => *x as i64,
        FieldValue::I(x) => *x as i64,
        FieldValue::i(x) => *x as i64,
        FieldValue::l(x) => *x,
        other => panic!("{what} should be an integer, got {other:?}"),
    }
}

/// One entry of the x-death header, with the types RabbitMQ 3.10 gives each field checked:
/// count 'l' (signed 64), reason/queue/exchange 'S', time 'T' (seconds), routing-keys 'A' of
/// 'S', original-expiration 'S' (only for a message that had a per-message TTL).
#[derive(Debug, Clone, PartialEq)]
pub struct XDeath {
    pub count: i64,
    pub reason: String,
    pub queue: String,
    pub time: u64,
    pub exchange: String,
    pub routing_keys: Vec<String>,
    pub original_expiration: Option<String>,
}

/// The x-death entries of a message, most recent first (empty if it has none).
pub fn x_deaths(props: &BasicProperties) -> Vec<XDeath> {
    let Some(v) = header(props, "x-death") else {
        return Vec::new();
    };
    as_array(v, "x-death")
        .iter()
        .map(|e| {
            let FieldValue::F(t) = e else {
                panic!("x-death entries should be tables ('F'), got {e:?}");
            };
            let get = |k: &str| {
                t.get(&k.try_into().unwrap())
                    .unwrap_or_else(|| panic!("x-death entry without '{k}': {t:?}"))
            };
            let keys: Vec<String> = t.as_ref().keys().map(|k| k.to_string()).collect();
            for k in &keys {
                assert!(
                    [
                        "count",
                        "reason",
                        "queue",
                        "time",
                        "exchange",
                        "routing-keys",
                        "original-expiration"
                    ]
                    .contains(&k.as_str()),
                    "unexpected field '{k}' in x-death entry {t:?}"
                );
            }
            let FieldValue::l(count) = get("count") else {
                panic!("x-death count should be a signed 64-bit 'l': {t:?}");
            };
            let FieldValue::T(time) = get("time") else {
                panic!("x-death time should be a timestamp 'T': {t:?}");
            };
            XDeath {
                count: *count,
                reason: as_str(get("reason"), "x-death reason"),
                queue: as_str(get("queue"), "x-death queue"),
                time: *time,
                exchange: as_str(get("exchange"), "x-death exchange"),
                routing_keys: as_array(get("routing-keys"), "x-death routing-keys")
                    .iter()
                    .map(|k| as_str(k, "x-death routing key"))
                    .collect(),
                original_expiration: t
                    .get(&"original-expiration".try_into().unwrap())
                    .map(|v| as_str(v, "x-death original-expiration")),
            }
        })
        .collect()
}

/// Seconds since the epoch, now (to check x-death's time).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Assert the x-first-death-* headers, and that RabbitMQ 3.10's x-last-death-* (added only
/// in 3.13) are absent.
pub fn assert_first_death(props: &BasicProperties, queue: &str, reason: &str, exchange: &str) {
    assert_eq!(
        header_str(props, "x-first-death-queue").as_deref(),
        Some(queue),
        "x-first-death-queue"
    );
    assert_eq!(
        header_str(props, "x-first-death-reason").as_deref(),
        Some(reason),
        "x-first-death-reason"
    );
    assert_eq!(
        header_str(props, "x-first-death-exchange").as_deref(),
        Some(exchange),
        "x-first-death-exchange"
    );
    for k in [
        "x-last-death-queue",
        "x-last-death-reason",
        "x-last-death-exchange",
    ] {
        assert!(
            header(props, k).is_none(),
            "RabbitMQ 3.10 does not set {k}: {props:?}"
        );
    }
}

/// Assert a single fresh x-death entry as RabbitMQ writes it on a first dead-lettering.
pub fn assert_one_death(
    props: &BasicProperties,
    queue: &str,
    reason: &str,
    exchange: &str,
    routing_keys: &[&str],
    original_expiration: Option<&str>,
) {
    let ds = x_deaths(props);
    assert_eq!(ds.len(), 1, "one x-death entry expected: {ds:?}");
    let d = &ds[0];
    let want = XDeath {
        count: 1,
        reason: reason.into(),
        queue: queue.into(),
        time: d.time,
        exchange: exchange.into(),
        routing_keys: routing_keys.iter().map(|k| k.to_string()).collect(),
        original_expiration: original_expiration.map(String::from),
    };
    assert_eq!(d, &want, "x-death entry");
    let now = now_secs();
    assert!(
        d.time + 60 >= now && d.time <= now + 60,
        "x-death time {} is not about now ({now})",
        d.time
    );
    assert_first_death(props, queue, reason, exchange);
}

// ---------------------------------------------------------------------------------------
// declares
// ---------------------------------------------------------------------------------------

/// queue.declare arguments: non-durable, client-named, with `args`.
pub fn qargs(name: &str, args: FieldTable) -> QueueDeclareArguments {
    QueueDeclareArguments::new(name).arguments(args).finish()
}

/// queue.declare arguments: durable, client-named, with `args`.
pub fn durable_qargs(name: &str, args: FieldTable) -> QueueDeclareArguments {
    QueueDeclareArguments::new(name)
        .durable(true)
        .arguments(args)
        .finish()
}

impl Chan {
    /// queue.declare that must succeed; returns (name, messages, consumers).
    pub async fn declare(&self, args: QueueDeclareArguments) -> (String, u32, u32) {
        let what = format!("queue.declare {args:?}");
        within(&what, self.ch.queue_declare(args))
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
            .expect("queue.declare-ok")
    }

    /// Declare a non-durable queue with `args` (must succeed).
    pub async fn declare_args(&self, name: &str, args: FieldTable) {
        self.declare(qargs(name, args)).await;
    }

    /// Declare an exchange of `kind` with `args` (must succeed).
    pub async fn declare_exchange_args(&self, name: &str, kind: &str, args: FieldTable) {
        let what = format!("exchange.declare {name} ({kind})");
        within(
            &what,
            self.ch.exchange_declare(
                ExchangeDeclareArguments::new(name, kind)
                    .arguments(args)
                    .finish(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{what} failed: {e}"));
    }

    /// exchange.bind destination <- source with `key` (must succeed).
    pub async fn bind_exchange(&self, destination: &str, source: &str, key: &str) {
        within(
            "exchange.bind-ok",
            self.ch
                .exchange_bind(ExchangeBindArguments::new(destination, source, key)),
        )
        .await
        .unwrap_or_else(|e| panic!("exchange.bind {destination} <- {source}: {e}"));
    }

    /// A consumer with `arguments` (e.g. x-priority) and an explicit ack mode.
    pub async fn consume_args(
        &self,
        queue: &str,
        no_ack: bool,
        arguments: FieldTable,
    ) -> (String, Consumer) {
        let args = BasicConsumeArguments::new(queue, "")
            .manual_ack(!no_ack)
            .arguments(arguments)
            .finish();
        within("basic.consume-ok", self.ch.basic_consume_rx(args))
            .await
            .expect("basic.consume failed")
    }

    /// Publish with properties; with confirms on, wait for the confirm and return what the
    /// broker answered: the ack/nack and any basic.return that came before it.
    pub async fn publish_outcome(
        &mut self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: &[u8],
        mandatory: bool,
    ) -> Outcome {
        self.confirm_select().await;
        self.publish_with(exchange, routing_key, props, body, mandatory)
            .await;
        let tag = self.published;
        let mut returned = Vec::new();
        loop {
            match self.events.next().await {
                ChanEvent::Ack { tag: t, multiple } if t == tag || (multiple && t > tag) => {
                    return Outcome {
                        acked: true,
                        returned,
                    }
                }
                ChanEvent::Nack { tag: t, multiple } if t == tag || (multiple && t > tag) => {
                    return Outcome {
                        acked: false,
                        returned,
                    }
                }
                ChanEvent::Ack { .. } | ChanEvent::Nack { .. } => continue,
                ChanEvent::Returned {
                    code, text, body, ..
                } => returned.push((code, text, String::from_utf8_lossy(&body).into_owned())),
                other => panic!("publish to {exchange}/{routing_key}: unexpected {other:?}"),
            }
        }
    }

    /// Publish with properties and wait for the broker's ack (panics on a nack).
    pub async fn publish_props_confirmed(
        &mut self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: &[u8],
    ) {
        let o = self
            .publish_outcome(exchange, routing_key, props, body, false)
            .await;
        assert!(
            o.acked,
            "publish of {body:?} to {exchange}/{routing_key} was nacked"
        );
    }

    /// basic.get no-ack; the body as a string, `None` for get-empty.
    pub async fn get_body(&self, queue: &str) -> Option<String> {
        self.get(queue, true)
            .await
            .map(|(_, _, b)| String::from_utf8_lossy(&b).into_owned())
    }

    /// Message count of `queue` (passive declare; on RabbitMQ this renews x-expires).
    pub async fn count(&self, queue: &str) -> u32 {
        self.queue_counts(queue).await.0
    }
}

/// What a confirmed publish came back with.
#[derive(Debug)]
pub struct Outcome {
    pub acked: bool,
    /// (reply code, reply text, body) of each basic.return.
    pub returned: Vec<(u16, String, String)>,
}

/// Properties carrying a per-message TTL.
pub fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms).finish()
}

/// Properties with a priority.
pub fn prioritised(p: u8) -> BasicProperties {
    BasicProperties::default().with_priority(p).finish()
}

/// Properties with headers.
pub fn with_headers(h: FieldTable) -> BasicProperties {
    BasicProperties::default().with_headers(h).finish()
}

/// Declare `name` with `args` on a fresh channel of `conn` and expect the channel to be
/// closed with `code` and exactly `text`, naming queue.declare (50/10).
pub async fn expect_declare_refused(
    conn: &Conn,
    args: QueueDeclareArguments,
    code: u16,
    text: &str,
) {
    let mut ch = conn.channel().await;
    let what = format!("queue.declare {args:?}");
    refused(&what, ch.ch.queue_declare(args)).await;
    let (c, t, class, method) = ch.events.closed_full().await;
    assert_eq!(
        (c, t.as_str(), class, method),
        (code, text, 50, 10),
        "channel.close for {what}"
    );
}

/// The text RabbitMQ gives for an invalid queue argument.
pub fn invalid_arg(arg: &str, queue: &str, detail: &str) -> String {
    format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue '{queue}' in vhost '/': {detail}")
}

// ---------------------------------------------------------------------------------------
// bounded polls
// ---------------------------------------------------------------------------------------

/// Poll (bounded by [`TIMEOUT`]) until `queue` holds `n` ready messages; returns how long
/// it took.
pub async fn await_count(ch: &Chan, queue: &str, n: u32) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = ch.count(queue).await;
        if got == n {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < TIMEOUT,
            "queue {queue} still holds {got} messages after {TIMEOUT:?}, expected {n}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Wait (bounded by `limit`) until `queue` no longer exists, without using it: a mandatory
/// publish to it through the default exchange comes back 312 NO_ROUTE once it is gone.
/// Returns the time since `since`. `ch` must be a channel of its own (it is put in confirm
/// mode).
pub async fn await_queue_expired(
    ch: &mut Chan,
    queue: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let o = ch
            .publish_outcome("", queue, BasicProperties::default(), b"probe", true)
            .await;
        if !o.returned.is_empty() {
            assert_eq!(o.returned[0].0, 312, "return code {:?}", o.returned);
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "queue {queue} still exists {:?} after it was last used",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when CONEY_TEST_ADDR points the tests at another broker: coney-only tests (features
/// RabbitMQ 3.10 from Debian does not ship, or deliberate differences) return early.
pub fn coney_only(b: &Broker, what: &str) -> bool {
    if b.is_external() {
        eprintln!("skipped against an external broker (coney-only): {what}");
        return true;
    }
    false
}

impl Chan {
    /// queue.delete (must succeed); returns the number of messages deleted.
    pub async fn delete_queue(&self, queue: &str) -> u32 {
        within(
            "queue.delete-ok",
            self.ch
                .queue_delete(amqprs::channel::QueueDeleteArguments::new(queue)),
        )
        .await
        .unwrap_or_else(|e| panic!("queue.delete {queue}: {e}"))
        .unwrap_or(0)
    }
}
