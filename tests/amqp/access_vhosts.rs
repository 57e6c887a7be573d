//! Virtual hosts as RabbitMQ 3.10 has them: each with its own entities and standard
//! exchanges, refused when unknown or not permitted, with max-connections and max-queues
//! limits, and error texts naming the vhost. Users and vhosts come from a definitions
//! document (access_support.rs); against RabbitMQ set CONEY_TEST_ADDR and CONEY_RABBITMQ_DIR.

use crate::access_support::{login, open_raw, open_refused, Setup};
use crate::ext_support::*;
use crate::support::*;
use amqprs::channel::{
    BasicGetArguments, ExchangeDeclareArguments, ExchangeDeleteArguments, QueueDeclareArguments,
};
use amqprs::BasicProperties;
use std::time::{Duration, Instant};

/// connection.open of a vhost that does not exist is 530 NOT_ALLOWED naming it, closing the
/// connection with class/method connection.open.
#[test]
fn unknown_vhost_is_not_allowed() {
    let b = Broker::start();
    let vhost = unique("nope");
    let close = open_refused(&b, "guest", "guest", &vhost);
    assert_eq!(
        close,
        (
            530,
            format!("NOT_ALLOWED - vhost {vhost} not found"),
            10,
            40
        )
    );
}

/// The same queue name in two vhosts is two queues, an exchange of one is unknown in the
/// other, and each vhost's default exchange routes to its own queues only.
#[tokio::test]
async fn vhosts_keep_their_entities_apart() {
    let (v1, v2) = (unique("v1"), unique("v2"));
    let b = Setup::new()
        .vhost(&v1)
        .vhost(&v2)
        .permit("guest", &v1, ".*", ".*", ".*")
        .permit("guest", &v2, ".*", ".*", ".*")
        .start();
    let c1 = login(&b, "guest", "guest", &v1).await;
    let c2 = login(&b, "guest", "guest", &v2).await;
    let mut ch1 = c1.channel().await;
    let mut ch2 = c2.channel().await;
    ch1.declare_queue("q").await;
    ch2.declare_queue("q").await;
    ch1.declare_exchange("x", "fanout").await;
    ch1.bind("q", "x", "").await;
    ch1.confirm_select().await;
    ch2.confirm_select().await;
    ch1.publish_confirmed("x", "", b"via x in v1").await;
    ch2.publish_confirmed("", "q", b"default in v2").await;
    assert_eq!(ch1.drain("q").await, ["via x in v1"]);
    assert_eq!(ch2.drain("q").await, ["default in v2"]);
    let mut ch = c2.channel().await;
    refused(
        "passive declare of v1's exchange in v2",
        ch.exchange_declare(
            ExchangeDeclareArguments::new("x", "fanout")
                .passive(true)
                .finish(),
        ),
    )
    .await;
    ch.expect_closed(404, &format!("NOT_FOUND - no exchange 'x' in vhost '{v2}'"))
        .await;
}

/// Direct reply-to routes by name alone, as RabbitMQ 3.10 does: a reply name issued in one
/// vhost passively declares (0 messages, 1 consumer) and takes replies published in another
/// vhost; a reply name that is not live is 404 naming the declaring connection's vhost.
#[tokio::test]
async fn direct_reply_names_route_across_vhosts() {
    let (v1, v2) = (unique("rt1"), unique("rt2"));
    let b = Setup::new()
        .vhost(&v1)
        .vhost(&v2)
        .permit("guest", &v1, ".*", ".*", ".*")
        .permit("guest", &v2, ".*", ".*", ".*")
        .start();
    let c1 = login(&b, "guest", "guest", &v1).await;
    let c2 = login(&b, "guest", "guest", &v2).await;
    let mut client = c1.channel().await;
    let server = c1.channel().await;
    server.declare_queue("requests").await;
    let (_, mut requests) = server.consume("requests", true).await;
    let (_, mut replies) = client.consume("amq.rabbitmq.reply-to", true).await;
    let request = BasicProperties::default()
        .with_reply_to("amq.rabbitmq.reply-to")
        .finish();
    client
        .publish_with("", "requests", request, b"req", false)
        .await;
    let name = next_delivery(&mut requests)
        .await
        .props
        .reply_to()
        .cloned()
        .expect("reply_to");
    let mut other = c2.channel().await;
    assert_eq!(other.queue_counts(&name).await, (0, 1));
    other
        .publish_with("", &name, BasicProperties::default(), b"from v2", false)
        .await;
    assert_eq!(next_delivery(&mut replies).await.body_str(), "from v2");
    let dead = "amq.rabbitmq.reply-to.nope";
    refused(
        "passive declare of a name that is not live",
        other.queue_declare(QueueDeclareArguments::new(dead).passive(true).finish()),
    )
    .await;
    other
        .expect_closed(
            404,
            &format!("NOT_FOUND - no queue '{dead}' in vhost '{v2}'"),
        )
        .await;
}

/// A new vhost has RabbitMQ's predeclared exchanges, and they route.
#[tokio::test]
async fn new_vhost_has_the_standard_exchanges() {
    let v = unique("std");
    let b = Setup::new()
        .vhost(&v)
        .permit("guest", &v, ".*", ".*", ".*")
        .start();
    let c = login(&b, "guest", "guest", &v).await;
    let mut ch = c.channel().await;
    for (x, kind) in [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ] {
        within(
            "passive exchange.declare",
            ch.exchange_declare(
                ExchangeDeclareArguments::new(x, kind)
                    .passive(true)
                    .finish(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{x} missing in {v}: {e}"));
    }
    ch.declare_queue("t").await;
    ch.bind("t", "amq.topic", "a.#").await;
    ch.confirm_select().await;
    ch.publish_confirmed("amq.topic", "a.b.c", b"topic").await;
    assert_eq!(ch.drain("t").await, ["topic"]);
}

/// Error texts name the connection's vhost: missing queue and exchange (404), a system
/// exchange's deletion (403), an inequivalent redeclare (406).
#[tokio::test]
async fn error_texts_name_the_vhost() {
    let v = unique("texts");
    let b = Setup::new()
        .vhost(&v)
        .permit("guest", &v, ".*", ".*", ".*")
        .start();
    let c = login(&b, "guest", "guest", &v).await;
    let mut ch = c.channel().await;
    refused("basic.get", ch.basic_get(BasicGetArguments::new("nope"))).await;
    ch.expect_closed(404, &format!("NOT_FOUND - no queue 'nope' in vhost '{v}'"))
        .await;
    let mut ch = c.channel().await;
    ch.publish("nope", "k", b"m").await;
    ch.expect_closed(
        404,
        &format!("NOT_FOUND - no exchange 'nope' in vhost '{v}'"),
    )
    .await;
    let mut ch = c.channel().await;
    refused(
        "exchange.delete amq.topic",
        ch.exchange_delete(ExchangeDeleteArguments::new("amq.topic")),
    )
    .await;
    ch.expect_closed(
        403,
        &format!(
            "ACCESS_REFUSED - deletion of system exchange 'amq.topic' in vhost '{v}' not allowed"
        ),
    )
    .await;
    let mut ch = c.channel().await;
    ch.declare_queue("q").await;
    refused(
        "durable redeclare",
        ch.queue_declare(QueueDeclareArguments::durable_client_named("q")),
    )
    .await;
    ch.expect_closed(
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '{v}': received 'true' but current is 'false'"),
    )
    .await;
}

/// A user with no permission in a vhost cannot open it: 530 naming vhost and user.
#[test]
fn vhost_without_permission_is_not_allowed() {
    let (v, u) = (unique("closed"), unique("u"));
    let b = Setup::new()
        .vhost(&v)
        .user(&u, "pw")
        .permit(&u, "/", ".*", ".*", ".*")
        .start();
    let close = open_refused(&b, &u, "pw", &v);
    assert_eq!(
        close,
        (
            530,
            format!("NOT_ALLOWED - access to vhost '{v}' refused for user '{u}'"),
            10,
            40
        )
    );
    open_raw(&b, &u, "pw", "/").expect("its own vhost");
}

/// max-connections: the connection past the limit is refused with RabbitMQ's text; once one
/// closes, a new one is let in.
#[test]
fn vhost_connection_limit() {
    let v = unique("lim");
    let b = Setup::new()
        .vhost_limited(&v, 1, -1)
        .permit("guest", &v, ".*", ".*", ".*")
        .start();
    let first = open_raw(&b, "guest", "guest", &v).expect("first connection");
    let close = open_refused(&b, "guest", "guest", &v);
    assert_eq!(
        close,
        (
            530,
            format!(
                "NOT_ALLOWED - access to vhost '{v}' refused for user 'guest': connection limit (1) is reached"
            ),
            10,
            40
        )
    );
    drop(first);
    // Both brokers forget a closed connection asynchronously: retry, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open_raw(&b, "guest", "guest", &v) {
            Ok(_) => break,
            Err(close) if Instant::now() < deadline => {
                assert_eq!(close.0, 530, "{close:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(close) => panic!("still refused after the first connection closed: {close:?}"),
        }
    }
}

/// max-queues: a new queue past the limit is 406 with RabbitMQ's text on queue.declare;
/// redeclaring an existing queue is still allowed.
#[tokio::test]
async fn vhost_queue_limit() {
    let v = unique("qlim");
    let b = Setup::new()
        .vhost_limited(&v, -1, 1)
        .permit("guest", &v, ".*", ".*", ".*")
        .start();
    let c = login(&b, "guest", "guest", &v).await;
    let mut ch = c.channel().await;
    ch.declare_queue("a1").await;
    ch.declare_queue("a1").await;
    refused(
        "queue.declare a2",
        ch.queue_declare(QueueDeclareArguments::new("a2")),
    )
    .await;
    let (code, text, class, method) = ch.events.closed_full().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            406,
            format!("PRECONDITION_FAILED - cannot declare queue 'a2': queue limit in vhost '{v}' (1) is reached").as_str(),
            50,
            10
        )
    );
}

/// Queue arguments act in the queue's own vhost: a rejected message goes to the dead-letter
/// exchange of that name in its queue's vhost, not to the same-named exchange of another
/// vhost; a bad argument's 406 and an inequivalent redeclare name the declaring vhost.
#[tokio::test]
async fn dead_letters_and_argument_errors_stay_in_their_vhost() {
    let (v1, v2) = (unique("dl1"), unique("dl2"));
    let b = Setup::new()
        .vhost(&v1)
        .vhost(&v2)
        .permit("guest", &v1, ".*", ".*", ".*")
        .permit("guest", &v2, ".*", ".*", ".*")
        .start();
    let c1 = login(&b, "guest", "guest", &v1).await;
    let c2 = login(&b, "guest", "guest", &v2).await;
    let mut ch1 = c1.channel().await;
    let mut ch2 = c2.channel().await;
    for ch in [&mut ch1, &mut ch2] {
        ch.declare_exchange("dlx", "fanout").await;
        ch.declare_queue("dead").await;
        ch.bind("dead", "dlx", "").await;
    }
    ch1.declare_args("src", table(&[("x-dead-letter-exchange", s("dlx"))]))
        .await;
    ch1.confirm_select().await;
    ch1.publish_confirmed("", "src", b"m").await;
    let (ok, _, _) = ch1.get("src", false).await.expect("message in src");
    ch1.reject(ok.delivery_tag(), false).await;
    await_count(&ch1, "dead", 1).await;
    assert_eq!(ch1.drain("dead").await, ["m"]);
    assert_eq!(
        ch2.count("dead").await,
        0,
        "the other vhost's dlx got nothing"
    );

    expect_declare_refused(
        &c2,
        qargs("bad", table(&[("x-max-length", s("ten"))])),
        406,
        &format!(
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'bad' in vhost '{v2}': \"expected integer, got longstr\""
        ),
    )
    .await;
    expect_declare_refused(
        &c1,
        qargs("src", table(&[("x-dead-letter-exchange", s("other"))])),
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 'src' in vhost '{v1}': received 'other' but current is 'dlx'"
        ),
    )
    .await;
}
