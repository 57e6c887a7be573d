"""Clean restart (SIGTERM): what is durable comes back, what is not is gone."""
import time

import pika

from durlib import check, drain, exchange_exists, queue_count, time_limit, wait_forced_close

N = 120


def props_of(i):
    """Rich properties for persistent message i, all of which must survive."""
    return pika.BasicProperties(
        delivery_mode=2,
        content_type='application/x-test',
        content_encoding='identity',
        headers={'i': i, 'name': 'msg-%d' % i, 'nested': {'ok': True}},
        priority=i % 10,
        correlation_id='corr-%d' % i,
        reply_to='replies',
        message_id='id-%d' % i,
        timestamp=1700000000 + i,
        type='test.message',
        app_id='durability')


def persistent_body(i):
    return ('persistent %d ' % i).encode() + bytes(range(256)) * (i % 5)


def publish(ch, exchange, key, body, props=None, mandatory=True):
    """Publish on a confirm-mode channel; returns 'ok' or 'unroutable'."""
    try:
        ch.basic_publish(exchange, key, body, props or pika.BasicProperties(delivery_mode=2),
                         mandatory=mandatory)
        return 'ok'
    except pika.exceptions.UnroutableError:
        return 'unroutable'


@time_limit(45)
def test_restart_keeps_durable_state(t):
    """After a clean restart (SIGTERM, exit status 0) a durable queue holds exactly
    the N persistent messages published to it with confirms, in publish order, with
    every property and body byte intact and redelivered=False; the transient messages
    published to the same queue are gone, and so are a non-durable queue and an exclusive
    durable queue (with their persistent messages), a non-durable exchange, and a durable
    exchange and queue deleted before the stop. Durable direct, fanout, topic and headers
    exchanges (binding arguments included), an exchange-to-exchange binding into an
    internal exchange, a server-named durable queue, and bindings between durable
    entities still route; a binding removed before the restart, and bindings to a
    non-durable queue or from a non-durable exchange, do not. Durable, type and internal
    flags are kept (an inequivalent redeclare fails with 406; a publish straight to the
    internal exchange fails with 403)."""
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare('dq', durable=True)
    ch.queue_declare('tq', durable=False)
    ch.queue_declare('xq', durable=True, exclusive=True)
    for name, kind in (('d.direct', 'direct'), ('d.fanout', 'fanout'), ('d.topic', 'topic'),
                       ('d.e2e', 'fanout')):
        ch.exchange_declare(name, kind, durable=True)
    ch.exchange_declare('t.direct', 'direct', durable=False)
    ch.exchange_declare('d.headers', 'headers', durable=True)
    ch.exchange_declare('d.internal', 'fanout', durable=True, internal=True)
    gen = ch.queue_declare('', durable=True).method.queue     # server-named, durable
    for q in ('q.direct', 'q.fanout', 'q.topic', 'q.headers'):
        ch.queue_declare(q, durable=True)
    ch.queue_bind('q.headers', 'd.headers', '', arguments={'x-match': 'all', 'k': 'v', 'n': 1})
    ch.exchange_bind(destination='d.internal', source='d.fanout', routing_key='')
    ch.queue_bind(gen, 'd.internal', '')
    ch.queue_bind('q.direct', 'd.direct', 'k1')
    ch.queue_bind('q.direct', 'd.direct', 'k3')
    ch.queue_unbind('q.direct', 'd.direct', 'k3')          # removed before the restart
    ch.queue_bind('tq', 'd.direct', 'k2')                  # to a non-durable queue
    ch.queue_bind('q.direct', 't.direct', 'k1')            # from a non-durable exchange
    ch.queue_bind('q.fanout', 'd.fanout', '')
    ch.queue_bind('q.topic', 'd.topic', 'a.*.c')
    ch.queue_bind('q.topic', 'd.topic', '#.z')
    ch.exchange_bind(destination='d.topic', source='d.e2e', routing_key='')
    ch.exchange_declare('d.deleted', 'fanout', durable=True)   # deleted before the restart
    ch.queue_declare('q.deleted', durable=True)
    ch.queue_bind('q.deleted', 'd.deleted')
    ch.queue_bind('q.fanout', 'd.deleted')
    ch.basic_publish('', 'q.deleted', b'in a deleted queue', pika.BasicProperties(delivery_mode=2))
    ch.exchange_delete('d.deleted')
    ch.queue_delete('q.deleted')

    expected = []
    transient = 0
    for i in range(N):
        body = persistent_body(i)
        check(publish(ch, '', 'dq', body, props_of(i)) == 'ok', 'persistent %d unroutable' % i)
        expected.append(body)
        if i % 3 == 0:   # transient, delivery_mode=1
            publish(ch, '', 'dq', b'transient %d' % i, pika.BasicProperties(delivery_mode=1))
            transient += 1
        if i % 7 == 0:   # no delivery_mode at all: transient too
            publish(ch, '', 'dq', b'no mode %d' % i, pika.BasicProperties(content_type='text/plain'))
            transient += 1
    for i in range(5):
        publish(ch, '', 'tq', b'persistent to a non-durable queue %d' % i)
        publish(ch, '', 'xq', b'persistent to an exclusive queue %d' % i)
    check(publish(ch, 'd.direct', 'k1', b'before: direct') == 'ok', 'd.direct k1 unroutable')
    check(publish(ch, 't.direct', 'k1', b'before: transient exchange') == 'ok',
          't.direct k1 unroutable before the restart')
    check(publish(ch, 'd.fanout', 'any', b'before: fanout') == 'ok', 'd.fanout unroutable')
    check(publish(ch, 'd.e2e', 'x.y.z', b'before: e2e') == 'ok', 'd.e2e x.y.z unroutable')
    check(publish(ch, 'd.headers', '', b'before: headers',
                  pika.BasicProperties(delivery_mode=2, headers={'k': 'v', 'n': 1})) == 'ok',
          'd.headers unroutable before the restart')
    check(queue_count(b, 'dq') == N + transient, 'dq before the restart: %s messages, expected %d'
          % (queue_count(b, 'dq'), N + transient))
    check(queue_count(b, 'q.direct') == 2, 'q.direct should hold 2 before the restart')
    check(queue_count(b, 'tq') == 5, 'tq should hold 5 before the restart')

    # SIGTERM with the connection open: the client is told 320 CONNECTION_FORCED
    b.proc.send_signal(15)
    code, text = wait_forced_close(conn)
    check(code == 320 and text.startswith('CONNECTION_FORCED'),
          'client saw close %s %r, expected 320 CONNECTION_FORCED' % (code, text))
    b.term()   # waits for exit status 0 (a second SIGTERM during shutdown is harmless)
    b.start()
    rec = b.recovery()
    check(rec['clean'], 'recovery after SIGTERM should report a clean shutdown: %r' % rec)
    check(rec['torn_bytes'] == 0 and rec['damaged'] == 0, 'damage after a clean stop: %r' % rec)
    t.report('recovered after SIGTERM: %r' % rec)

    # what is gone
    check(queue_count(b, 'tq') is None, 'non-durable queue tq survived the restart')
    check(queue_count(b, 'xq') is None, 'exclusive durable queue xq survived the restart')
    check(not exchange_exists(b, 't.direct'), 'non-durable exchange t.direct survived the restart')
    check(not exchange_exists(b, 'd.deleted'), 'deleted durable exchange d.deleted came back')
    check(queue_count(b, 'q.deleted') is None, 'deleted durable queue q.deleted came back')
    for x in ('d.direct', 'd.fanout', 'd.topic', 'd.e2e', 'd.headers', 'd.internal'):
        check(exchange_exists(b, x), 'durable exchange %s is gone after the restart' % x)

    # the persistent messages, exactly, in order, intact
    got = drain(b, 'dq')
    bodies = [g.body for g in got]
    stray = [x for x in bodies if x.startswith((b'transient', b'no mode'))]
    check(not stray, 'transient messages came back after the restart: %r' % stray[:5])
    check(len(bodies) == N, 'dq: %d messages after the restart, expected %d' % (len(bodies), N))
    check(bodies == expected, 'dq: bodies differ from what was published (order or content); first '
          'difference at %d' % next(i for i, (x, y) in enumerate(zip(bodies, expected)) if x != y)
          if bodies != expected else '')
    for i, g in enumerate(got):
        want = props_of(i)
        p = g.props
        for attr in ('delivery_mode', 'content_type', 'content_encoding', 'headers', 'priority',
                     'correlation_id', 'reply_to', 'message_id', 'timestamp', 'type', 'app_id'):
            check(getattr(p, attr) == getattr(want, attr),
                  'message %d: property %s is %r after the restart, published %r'
                  % (i, attr, getattr(p, attr), getattr(want, attr)))
        check(not g.redelivered, 'message %d never delivered before, but redelivered=True' % i)
        check(g.routing_key == 'dq' and g.exchange == '',
              'message %d: exchange/routing key %r/%r' % (i, g.exchange, g.routing_key))

    # durability properties of the definitions
    conn = b.connect()
    ch = conn.channel()
    try:
        ch.queue_declare('dq', durable=False)
        check(False, 'redeclaring durable dq as non-durable succeeded after the restart')
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 406, 'redeclare dq non-durable: %s, expected 406' % e)
    ch = conn.channel()
    try:
        ch.exchange_declare('d.fanout', 'direct', durable=True)
        check(False, 'redeclaring fanout d.fanout as direct succeeded after the restart')
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 406, 'redeclare d.fanout as direct: %s, expected 406' % e)
    ch = conn.channel()
    ch.exchange_declare('d.topic', 'topic', durable=True)   # equivalent: fine
    ch.exchange_declare('d.internal', 'fanout', durable=True, internal=True)
    ch.queue_declare('q.topic', durable=True)

    # routing after the restart
    ch.confirm_delivery()
    routes = [('d.direct', 'k1', 'ok'), ('d.direct', 'k2', 'unroutable'),
              ('d.direct', 'k3', 'unroutable'), ('d.fanout', 'whatever', 'ok'),
              ('d.topic', 'a.b.c', 'ok'), ('d.topic', 'x.y.z', 'ok'), ('d.topic', 'a.b', 'unroutable'),
              ('d.e2e', 'a.q.c', 'ok'), ('d.e2e', 'nothing', 'unroutable')]
    for x, key, want in routes:
        r = publish(ch, x, key, ('after: %s %s' % (x, key)).encode())
        check(r == want, 'after the restart, publish to %s with key %r: %s, expected %s'
              % (x, key, r, want))
    for hdrs, want in (({'k': 'v', 'n': 1}, 'ok'), ({'k': 'v', 'n': 2}, 'unroutable'),
                       ({'k': 'v'}, 'unroutable')):
        r = publish(ch, 'd.headers', '', ('after: headers %r' % sorted(hdrs.items())).encode(),
                    pika.BasicProperties(delivery_mode=2, headers=hdrs))
        check(r == want, 'after the restart, publish to d.headers with %r: %s, expected %s '
              '(binding arguments lost?)' % (hdrs, r, want))
    try:
        publish(ch, 'd.internal', '', b'straight to an internal exchange')
        check(False, 'publishing to the internal exchange d.internal succeeded after the restart')
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 403, 'publish to internal d.internal: %s, expected 403' % e)
    ch = conn.channel()
    try:
        ch.exchange_declare('d.internal', 'fanout', durable=True, internal=False)
        check(False, 'redeclaring internal d.internal as not internal succeeded after the restart')
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 406, 'redeclare d.internal as not internal: %s, expected 406' % e)
    conn.close()
    got = [g.body for g in drain(b, 'q.direct')]
    # a persistent message in a durable queue stays, whichever exchange brought it
    check(got == [b'before: direct', b'before: transient exchange', b'after: d.direct k1'],
          'q.direct after the restart: %r' % got)
    got = [g.body for g in drain(b, 'q.fanout')]
    check(got == [b'before: fanout', b'after: d.fanout whatever'], 'q.fanout: %r' % got)
    got = [g.body for g in drain(b, 'q.headers')]
    check(got == [b'before: headers', b"after: headers [('k', 'v'), ('n', 1)]"], 'q.headers: %r' % got)
    got = [g.body for g in drain(b, gen)]
    check(got == [b'before: fanout', b'after: d.fanout whatever'],
          'server-named durable queue %s (via internal exchange): %r' % (gen, got))
    got = [g.body for g in drain(b, 'q.topic')]
    check(got == [b'before: e2e', b'after: d.topic a.b.c', b'after: d.topic x.y.z',
                  b'after: d.e2e a.q.c'], 'q.topic: %r' % got)

    # and the acks of the drain are kept over one more clean restart
    b.restart()
    for q in ('dq', 'q.direct', 'q.fanout', 'q.topic', 'q.headers', gen):
        check(queue_count(b, q) == 0, '%s is not empty after a second restart' % q)
    b.term()
