//! Direct reply-to (the amq.rabbitmq.reply-to pseudo-queue) as RabbitMQ 3.10 does it (issue
//! 10, item 8): a no-ack consumer on it, reply_to rewritten to a name that routes back to the
//! requesting channel, and RabbitMQ's errors when it is misused. Run against RabbitMQ with
//! CONEY_TEST_ADDR.

use amqprs::channel::{BasicConsumeArguments, QueueDeclareArguments};
use amqprs::BasicProperties;

use crate::support::*;

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn request(correlation_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_reply_to(REPLY_TO)
        .with_correlation_id(correlation_id)
        .finish()
}

/// Start a no-ack consumer on the reply pseudo-queue; returns (tag, deliveries).
async fn consume_replies(ch: &Chan) -> (String, Consumer) {
    ch.consume(REPLY_TO, true).await
}

/// An RPC round trip: the server sees reply_to rewritten to amq.rabbitmq.reply-to.<token>;
/// its reply, published to that name through the default exchange, reaches the requesting
/// channel's reply consumer (exchange "", routing key the name) with its correlation id.
/// While the requester is there, a passive declare of the name finds it.
#[tokio::test]
async fn rpc_round_trip_over_direct_reply_to() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut client = conn.channel().await;
    let mut server = conn.channel().await;
    let rq = unique("rpc-requests");
    server.declare_queue(&rq).await;
    let (_st, mut requests) = server.consume(&rq, true).await;
    let (tag, mut replies) = consume_replies(&client).await;
    for corr in ["c1", "c2"] {
        client
            .publish_with("", &rq, request(corr), corr.as_bytes(), false)
            .await;
        let req = next_delivery(&mut requests).await;
        let reply_to = req.props.reply_to().cloned().expect("reply_to");
        assert!(
            reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > REPLY_TO.len() + 1,
            "reply_to not rewritten: {reply_to}"
        );
        assert_eq!(req.props.correlation_id().map(String::as_str), Some(corr));
        let props = BasicProperties::default()
            .with_correlation_id(corr)
            .finish();
        server
            .publish_with("", &reply_to, props, format!("re:{corr}").as_bytes(), false)
            .await;
        let d = next_delivery(&mut replies).await;
        assert_eq!(d.body_str(), format!("re:{corr}"));
        assert_eq!(d.props.correlation_id().map(String::as_str), Some(corr));
        assert_eq!(d.deliver.exchange(), "");
        assert_eq!(d.deliver.routing_key(), &reply_to);
        assert_eq!(d.deliver.consumer_tag(), &tag);
        assert_eq!(server.queue_counts(&reply_to).await, (0, 1));
    }
    conn.close().await;
}

/// The reply consumer must be no-ack: 406 "reply consumer cannot acknowledge"; a second reply
/// consumer on the same channel: 406 "reply consumer already set".
#[tokio::test]
async fn reply_consumer_is_no_ack_and_one_per_channel() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    refused(
        "basic.consume amq.rabbitmq.reply-to with acks",
        ch.ch.basic_consume_rx(
            BasicConsumeArguments::new(REPLY_TO, "")
                .manual_ack(true)
                .finish(),
        ),
    )
    .await;
    ch.expect_closed(
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
    )
    .await;
    let mut ch = conn.channel().await;
    consume_replies(&ch).await;
    refused(
        "a second reply consumer",
        ch.ch.basic_consume_rx(
            BasicConsumeArguments::new(REPLY_TO, "")
                .manual_ack(false)
                .finish(),
        ),
    )
    .await;
    ch.expect_closed(406, "PRECONDITION_FAILED - reply consumer already set")
        .await;
    conn.close().await;
}

/// Publishing with reply_to=amq.rabbitmq.reply-to from a channel that has no reply consumer
/// (none at all, one on another channel, one cancelled) closes the channel: 406 "fast reply
/// consumer does not exist", naming basic.publish (60/40).
#[tokio::test]
async fn reply_to_without_a_reply_consumer_is_refused() {
    let b = Broker::start();
    let conn = b.connect().await;
    let rq = unique("rpc-noconsumer");
    conn.channel().await.declare_queue(&rq).await;
    let other = conn.channel().await;
    consume_replies(&other).await;
    for case in [
        "no consumer",
        "consumer on another channel",
        "consumer cancelled",
    ] {
        let mut ch = conn.channel().await;
        if case == "consumer cancelled" {
            let (tag, _rx) = consume_replies(&ch).await;
            ch.cancel(&tag).await;
        }
        ch.publish_with("", &rq, request("x"), b"req", false).await;
        let (code, text, class, method) = ch.events.closed_full().await;
        assert_eq!(
            (code, text.as_str(), class, method),
            (
                406,
                "PRECONDITION_FAILED - fast reply consumer does not exist",
                60,
                40
            ),
            "{case}"
        );
    }
    conn.close().await;
}

/// A reply to a requester whose channel has gone is dropped: no error for the replier; a
/// mandatory reply comes back 312 NO_ROUTE; the name no longer passively declares (404).
#[tokio::test]
async fn reply_to_a_gone_requester_is_dropped() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut server = conn.channel().await;
    let rq = unique("rpc-gone");
    server.declare_queue(&rq).await;
    let (_st, mut requests) = server.consume(&rq, true).await;
    let mut client = conn.channel().await;
    consume_replies(&client).await;
    client
        .publish_with("", &rq, request("c"), b"req", false)
        .await;
    let reply_to = next_delivery(&mut requests)
        .await
        .props
        .reply_to()
        .cloned()
        .expect("reply_to");
    client.close().await;
    let o = server
        .publish_outcome("", &reply_to, BasicProperties::default(), b"late", false)
        .await;
    assert!(o.acked && o.returned.is_empty(), "{o:?}");
    let o = server
        .publish_outcome("", &reply_to, BasicProperties::default(), b"late", true)
        .await;
    assert_eq!(
        o.returned,
        [(312, "NO_ROUTE".to_string(), "late".to_string())]
    );
    assert!(!conn.queue_exists(&reply_to).await);
    conn.close().await;
}

/// A mandatory reply to a live requester is delivered, and also returned 312 NO_ROUTE: the
/// reply name is not a queue, so RabbitMQ counts the message as unrouted (documented on its
/// Direct Reply-to page).
#[tokio::test]
async fn mandatory_reply_is_delivered_and_returned() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut server = conn.channel().await;
    let rq = unique("rpc-mandatory");
    server.declare_queue(&rq).await;
    let (_st, mut requests) = server.consume(&rq, true).await;
    let mut client = conn.channel().await;
    let (_t, mut replies) = consume_replies(&client).await;
    client
        .publish_with("", &rq, request("c"), b"req", false)
        .await;
    let reply_to = next_delivery(&mut requests)
        .await
        .props
        .reply_to()
        .cloned()
        .expect("reply_to");
    let o = server
        .publish_outcome("", &reply_to, BasicProperties::default(), b"answer", true)
        .await;
    assert_eq!(
        o.returned,
        [(312, "NO_ROUTE".to_string(), "answer".to_string())]
    );
    assert_eq!(next_delivery(&mut replies).await.body_str(), "answer");
    conn.close().await;
}

/// The pseudo-queue itself: queue.declare of amq.rabbitmq.reply-to (passive or not) answers
/// declare-ok with 0 messages and 1 consumer, even with no reply consumer; basic.get on it is
/// 404 NOT_FOUND.
#[tokio::test]
async fn reply_pseudo_queue_declares_but_cannot_be_got_from() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    for passive in [true, false] {
        let (name, m, c) = ch
            .declare(
                QueueDeclareArguments::new(REPLY_TO)
                    .passive(passive)
                    .finish(),
            )
            .await;
        assert_eq!((name.as_str(), m, c), (REPLY_TO, 0, 1), "passive={passive}");
    }
    let mut g = conn.channel().await;
    refused(
        "basic.get amq.rabbitmq.reply-to",
        g.ch.basic_get(amqprs::channel::BasicGetArguments::new(REPLY_TO)),
    )
    .await;
    g.expect_closed(
        404,
        "NOT_FOUND - no queue 'amq.rabbitmq.reply-to' in vhost '/'",
    )
    .await;
    conn.close().await;
}

/// Publish a request from `client` to `queue` and return the reply_to the server sees.
async fn request_name(client: &mut Chan, server: &mut Consumer, queue: &str) -> String {
    client
        .publish_with("", queue, request("c"), b"req", false)
        .await;
    next_delivery(server)
        .await
        .props
        .reply_to()
        .cloned()
        .expect("reply_to")
}

/// Replies carry the channel's next delivery tag without using it up (RabbitMQ 3.10): two
/// replies share one tag, and the next basic.get gets that tag too.
#[tokio::test]
async fn replies_reuse_the_next_delivery_tag() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut server = conn.channel().await;
    let rq = unique("rpc-tags");
    server.declare_queue(&rq).await;
    let (_st, mut requests) = server.consume(&rq, true).await;
    let mut client = conn.channel().await;
    let (_t, mut replies) = consume_replies(&client).await;
    let reply_to = request_name(&mut client, &mut requests, &rq).await;
    for body in ["r1", "r2"] {
        server
            .publish_with(
                "",
                &reply_to,
                BasicProperties::default(),
                body.as_bytes(),
                false,
            )
            .await;
    }
    let got = next_deliveries(&mut replies, 2).await;
    assert_eq!(bodies(&got), ["r1", "r2"]);
    assert_eq!(got[0].tag(), got[1].tag(), "replies do not use up tags");
    let q = unique("rpc-tags-get");
    client.declare_queue(&q).await;
    let mut publisher = conn.channel().await;
    publisher.confirm_select().await;
    publisher.publish_confirmed("", &q, b"m").await;
    let (get_ok, _, _) = client.get(&q, true).await.expect("a message");
    assert_eq!(get_ok.delivery_tag(), got[0].tag());
    conn.close().await;
}

/// In a transaction, reply_to=amq.rabbitmq.reply-to without a reply consumer fails the
/// publish itself (not the commit); an unknown exchange (404) or an internal one (403) is
/// reported before it.
#[tokio::test]
async fn missing_reply_consumer_fails_the_publish_after_the_exchange_check() {
    let b = Broker::start();
    let conn = b.connect().await;
    let rq = unique("rpc-tx");
    conn.channel().await.declare_queue(&rq).await;
    let mut ch = conn.channel().await;
    within("tx.select-ok", ch.ch.tx_select())
        .await
        .expect("tx.select");
    ch.publish_with("", &rq, request("x"), b"req", false).await;
    let (code, text, class, method) = ch.events.closed_full().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            406,
            "PRECONDITION_FAILED - fast reply consumer does not exist",
            60,
            40
        )
    );
    let internal = unique("rpc-internal");
    within(
        "exchange.declare internal",
        conn.channel().await.ch.exchange_declare(
            amqprs::channel::ExchangeDeclareArguments::new(&internal, "fanout")
                .internal(true)
                .finish(),
        ),
    )
    .await
    .expect("exchange.declare");
    let missing = unique("no-such-exchange");
    for (x, code, text) in [
        (
            &missing,
            404,
            format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"),
        ),
        (
            &internal,
            403,
            format!(
                "ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'"
            ),
        ),
    ] {
        let mut ch = conn.channel().await;
        ch.publish_with(x, "k", request("x"), b"req", false).await;
        assert_eq!(ch.events.closed_full().await, (code, text, 60, 40));
    }
    conn.close().await;
}

/// A reply name is tied to the reply consumer it was issued for: once the requesting
/// connection has gone, a new connection consuming replies on the same channel number does
/// not receive replies sent to the old name (a mandatory one is returned).
#[tokio::test]
async fn stale_reply_name_does_not_reach_a_new_connection() {
    let b = Broker::start();
    let sconn = b.connect().await;
    let mut server = sconn.channel().await;
    let rq = unique("rpc-stale");
    server.declare_queue(&rq).await;
    let (_st, mut requests) = server.consume(&rq, true).await;
    let old = b.connect().await;
    let mut client = old.channel().await;
    consume_replies(&client).await;
    let stale = request_name(&mut client, &mut requests, &rq).await;
    old.close().await;
    let new = b.connect().await;
    let mut client = new.channel().await;
    let (_t, mut replies) = consume_replies(&client).await;
    let fresh = request_name(&mut client, &mut requests, &rq).await;
    assert_ne!(stale, fresh);
    let o = server
        .publish_outcome("", &stale, BasicProperties::default(), b"stale", true)
        .await;
    assert_eq!(o.returned.len(), 1, "{o:?}");
    server
        .publish_with("", &fresh, BasicProperties::default(), b"fresh", false)
        .await;
    assert_eq!(next_delivery(&mut replies).await.body_str(), "fresh");
    assert!(!sconn.queue_exists(&stale).await);
    new.close().await;
    sconn.close().await;
}

/// queue.declare of any other name starting with amq.rabbitmq.reply-to (a suffix that is
/// not a live reply name, or no dot) is 404, passive or not: the prefix is the pseudo-queue's.
#[tokio::test]
async fn other_reply_to_names_do_not_declare() {
    let b = Broker::start();
    let conn = b.connect().await;
    for name in ["amq.rabbitmq.reply-to.garbage", "amq.rabbitmq.reply-toX"] {
        for passive in [true, false] {
            let mut ch = conn.channel().await;
            refused(
                "queue.declare of a reply-to lookalike",
                ch.ch
                    .queue_declare(QueueDeclareArguments::new(name).passive(passive).finish()),
            )
            .await;
            ch.expect_closed(404, &format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
                .await;
        }
    }
    conn.close().await;
}
