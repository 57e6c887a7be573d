"""RabbitMQ's extensions across restarts and crashes (issue 10): TTL deadlines and x-expires
leases, priority backlogs paged to disk, dead-lettered messages, delayed messages.

Each assertion is what RabbitMQ documents: message TTL deadlines are absolute (a message whose
deadline passed while the broker was down is not delivered after the start, and is
dead-lettered if its queue has a dead-letter exchange); "leases of durable queues restart when
the server restarts" (x-expires counts from the start, not from before the stop); priority
order holds for a backlog larger than what a queue keeps in memory; the delayed-message plugin
keeps delayed messages across a restart. These tests restart the broker, so they run against
coney only; those coney cannot pass yet are listed in run.py's NOT_YET_ON_CONEY.
"""
import time

import pika

from durlib import check, drain, queue_count, time_limit

TTL_MS = 2000
DOWN_S = 3.0


def wait_count(b, queue, n, timeout=10):
    """Poll until `queue` holds `n` messages (bounded); returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        got = queue_count(b, queue)
        if got == n:
            return time.monotonic() - t0
        check(time.monotonic() - t0 < timeout,
              'queue %s holds %s messages after %ss, expected %d' % (queue, got, timeout, n))
        time.sleep(0.1)


def get_one(b, queue):
    """basic.get (auto-ack) on a fresh connection: (props, body) or None."""
    conn = b.connect()
    try:
        method, props, body = conn.channel().basic_get(queue, auto_ack=True)
        return None if method is None else (props, body)
    finally:
        conn.close()


def declare_ttl_topology(ch):
    """ttl.q (x-message-ttl 2 s, dead-letters to ttl.dlq), exp.q (no DLX), both durable."""
    ch.queue_declare('ttl.dlq', durable=True)
    ch.queue_declare('ttl.q', durable=True, arguments={
        'x-message-ttl': TTL_MS, 'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': 'ttl.dlq'})
    ch.queue_declare('exp.q', durable=True)


def ttl_deadline_across(t, clean):
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    declare_ttl_topology(ch)
    persistent = pika.BasicProperties(delivery_mode=2)
    ch.basic_publish('', 'ttl.q', b'queue-ttl', persistent)
    ch.basic_publish('', 'exp.q', b'message-ttl',
                      pika.BasicProperties(delivery_mode=2, expiration=str(TTL_MS)))
    ch.basic_publish('', 'exp.q', b'no-ttl', persistent)
    conn.close()
    if clean:
        b.term()
    else:
        b.kill()
    time.sleep(DOWN_S)      # the broker is down past both deadlines: that is the test
    b.start()
    wait_count(b, 'ttl.dlq', 1)
    got = get_one(b, 'ttl.dlq')
    check(got is not None and got[1] == b'queue-ttl', 'dead-lettered copy: %r' % (got,))
    deaths = (got[0].headers or {}).get('x-death') or []
    check(len(deaths) == 1 and deaths[0].get('reason') == 'expired'
          and deaths[0].get('queue') == 'ttl.q',
          'x-death of the expired message: %r' % (deaths,))
    check(got[0].delivery_mode == 2, 'the dead-lettered copy is not persistent')
    check(get_one(b, 'ttl.q') is None, 'ttl.q delivered a message past its deadline')
    got = get_one(b, 'exp.q')
    check(got is not None and got[1] == b'no-ttl',
          'exp.q should give only the message without TTL, got %r' % (got,))
    check(queue_count(b, 'exp.q') == 0, 'exp.q still holds messages')
    b.term()


@time_limit(40)
def test_ttl_deadline_holds_across_restart(t):
    """A persistent message in a durable queue with x-message-ttl 2 s, and one with
    expiration "2000" in another durable queue, then a clean stop (SIGTERM) for 3 s: after
    the start neither is delivered; the first is dead-lettered (reason expired, still
    persistent) to its durable dead-letter queue; a persistent message without TTL is
    still there."""
    ttl_deadline_across(t, clean=True)


@time_limit(40)
def test_ttl_deadline_holds_across_kill(t):
    """The same as ttl_deadline_holds_across_restart with a SIGKILL instead of SIGTERM."""
    ttl_deadline_across(t, clean=False)


@time_limit(40)
def test_x_expires_lease_restarts_with_the_broker(t):
    """A durable queue with x-expires 2 s, unused, broker stopped (SIGTERM) for 3 s: the
    queue is there after the start (its lease restarts with the server, as RabbitMQ
    documents) and is deleted about 2 s later without being used (probed with mandatory
    publishes, which do not count as a use)."""
    b = t.broker().start()
    conn = b.connect()
    conn.channel().queue_declare('lease', durable=True, arguments={'x-expires': TTL_MS})
    conn.close()
    b.term()
    time.sleep(DOWN_S)
    b.start()
    started = time.monotonic()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    gone_after = None
    while time.monotonic() - started < 10:
        try:
            ch.basic_publish('', 'lease', b'probe', mandatory=True)
        except pika.exceptions.UnroutableError:
            gone_after = time.monotonic() - started
            break
        time.sleep(0.1)
    conn.close()
    check(gone_after is not None, 'the queue with x-expires 2 s still exists 10 s after start')
    check(gone_after >= 1.5, 'deleted %.1fs after start: the lease did not restart' % gone_after)
    t.report('x-expires 2 s: deleted %.1fs after the start' % gone_after)
    b.term()


PRIO_N = 12000
PRIO_BODY = 1024    # 12000 x 1 KiB: more messages and bytes than a queue keeps in memory


@time_limit(90)
def test_priorities_paged_to_disk_survive_restart(t):
    """12000 persistent messages of 1 KiB with priorities 0..9 (cycling) in a durable queue
    with x-max-priority 9: more than a queue keeps in memory. The first 100 taken before the
    restart are the oldest of priority 9; after a clean restart the rest come out highest
    priority first and in publish order within a priority, all redelivered=False."""
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.queue_declare('prio', durable=True, arguments={'x-max-priority': 9})
    pad = b'.' * (PRIO_BODY - 16)
    for i in range(PRIO_N):
        p = i % 10
        ch.basic_publish('', 'prio', b'p%d-%08d' % (p, i) + pad,
                         pika.BasicProperties(delivery_mode=2, priority=p))
    conn.close()
    wait_count(b, 'prio', PRIO_N, timeout=30)
    key = lambda body: (-int(body[1:2]), int(body[3:11]))     # noqa: E731
    want = sorted((b'p%d-%08d' % (i % 10, i) for i in range(PRIO_N)), key=key)
    conn = b.connect()
    ch = conn.channel()
    first = []
    for _ in range(100):
        method, props, body = ch.basic_get('prio', auto_ack=True)
        check(method is not None, 'basic.get ran dry after %d' % len(first))
        first.append(body[:11])
    conn.close()
    check(first == want[:100], 'before the restart: got %r..., expected %r...'
          % (first[:3], want[:3]))
    b.restart()
    got = drain(b, 'prio', expect=PRIO_N - 100, timeout=60)
    order = [g.body[:11] for g in got]
    if order != want[100:]:
        bad = next(i for i, (x, y) in enumerate(zip(order, want[100:])) if x != y)
        check(False, 'after the restart message %d is %r, expected %r' % (bad, order[bad], want[100 + bad]))
    check(not any(g.redelivered for g in got), 'redelivered=True on a message never delivered')
    b.term()


@time_limit(40)
def test_dead_lettered_persistent_message_survives_kill(t):
    """A persistent message rejected (requeue=false) from a durable queue into its durable
    dead-letter queue: once the dead-letter queue shows it, a SIGKILL and a start keep it
    there (persistent, x-death reason rejected) and not in the source queue."""
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare('rej.dlq', durable=True)
    ch.queue_declare('rej.q', durable=True, arguments={
        'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'rej.dlq'})
    ch.basic_publish('', 'rej.q', b'rejected', pika.BasicProperties(delivery_mode=2))
    method, _, _ = ch.basic_get('rej.q', auto_ack=False)
    check(method is not None, 'nothing in rej.q')
    ch.basic_reject(method.delivery_tag, requeue=False)
    conn.close()
    wait_count(b, 'rej.dlq', 1)
    b.kill()
    b.start()
    check(queue_count(b, 'rej.q') == 0, 'the rejected message came back to rej.q')
    got = get_one(b, 'rej.dlq')
    check(got is not None and got[1] == b'rejected', 'rej.dlq after the crash: %r' % (got,))
    deaths = (got[0].headers or {}).get('x-death') or []
    check(got[0].delivery_mode == 2 and deaths and deaths[0].get('reason') == 'rejected',
          'dead-lettered copy: %r %r' % (got[0], deaths))
    b.term()


DELAY_MS = 3000


def delayed_across(t, clean):
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare('later', 'x-delayed-message', durable=True,
                        arguments={'x-delayed-type': 'direct'})
    ch.queue_declare('later.q', durable=True)
    ch.queue_bind('later.q', 'later', 'k')
    published = time.monotonic()
    ch.basic_publish('later', 'k', b'delayed',
                     pika.BasicProperties(delivery_mode=2, headers={'x-delay': DELAY_MS}))
    conn.close()
    if clean:
        b.term()
    else:
        b.kill()
    b.start()
    check(time.monotonic() - published < DELAY_MS / 1000.0 - 0.5,
          'the restart took too long for this test to see the message still delayed')
    check(queue_count(b, 'later.q') == 0, 'the delayed message arrived before its time')
    wait_count(b, 'later.q', 1, timeout=15)
    took = time.monotonic() - published
    check(took >= DELAY_MS / 1000.0 - 0.2,
          'arrived %.1fs after publishing, x-delay is %d ms' % (took, DELAY_MS))
    got = get_one(b, 'later.q')
    check(got is not None and got[1] == b'delayed' and got[0].delivery_mode == 2,
          'the delayed message after the restart: %r' % (got,))
    t.report('x-delay %d ms across a %s: arrived after %.1fs'
             % (DELAY_MS, 'SIGTERM' if clean else 'SIGKILL', took))
    b.term()


@time_limit(40)
def test_delayed_message_survives_restart(t):
    """coney-only (RabbitMQ needs the delayed-message plugin): a persistent message published
    with x-delay 3 s to a durable x-delayed-message exchange, then a clean restart at once:
    the message is not in the bound durable queue right after the start, and arrives there
    3 s after it was published (the due time is absolute), still persistent."""
    delayed_across(t, clean=True)


@time_limit(40)
def test_delayed_message_survives_kill(t):
    """The same as delayed_message_survives_restart with a SIGKILL instead of SIGTERM."""
    delayed_across(t, clean=False)
