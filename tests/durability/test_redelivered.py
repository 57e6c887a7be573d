"""The redelivered flag across a clean restart."""
import time

import pika

from durlib import Got, check, drain, queue_count, time_limit, wait_forced_close


def names(got):
    return [(g.body.decode(), g.redelivered) for g in got]


@time_limit(45)
def test_redelivered_flags_across_clean_restart(t):
    """Messages delivered but not acked when the broker is stopped with SIGTERM come back
    after the restart first, in their original order, with redelivered=True; messages
    never delivered come back with redelivered=False; an acked one does not come back.
    Covers every way a message can be out at the stop: requeued by an earlier connection
    close (m0, m1), held by basic.get (m0, m1, m3), by a consumer with prefetch (m4, m5),
    and by a client that never answers the broker's connection.close (m6) - the broker
    still exits 0 after its grace period. Each client that is still reading sees
    connection.close 320 CONNECTION_FORCED. The flags also survive a second clean restart
    without any delivery in between."""
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare('rq', durable=True)
    for i in range(10):
        ch.basic_publish('', 'rq', b'm%d' % i, pika.BasicProperties(delivery_mode=2))
    conn.close()

    def get(ch, n):
        out = []
        for _ in range(n):
            method, props, body = ch.basic_get('rq', auto_ack=False)
            check(method is not None, 'basic.get on rq returned empty')
            out.append(Got(method, props, body))
        return out

    # A takes m0, m1 and closes: both go back, marked redelivered
    a = b.connect()
    got = get(a.channel(), 2)
    check(names(got) == [('m0', False), ('m1', False)], 'A got %r' % names(got))
    a.close()

    # B takes m0, m1 (again), m2, m3 and acks only m2
    bc = b.connect()
    bch = bc.channel()
    got = get(bch, 4)
    check(names(got) == [('m0', True), ('m1', True), ('m2', False), ('m3', False)],
          'B got %r' % names(got))
    bch.basic_ack(got[2].tag)
    bch.queue_declare('rq', passive=True)   # a round trip: the ack has been processed

    # C consumes with prefetch 2: m4, m5, unacked
    cc = b.connect()
    cch = cc.channel()
    cch.basic_qos(prefetch_count=2)
    c_got = []
    cch.basic_consume('rq', lambda c, m, p, body: c_got.append(Got(m, p, body)), auto_ack=False)
    deadline = time.monotonic() + 10
    while len(c_got) < 2 and time.monotonic() < deadline:
        cc.process_data_events(time_limit=0.1)
    check(names(c_got) == [('m4', False), ('m5', False)], 'C got %r' % names(c_got))

    # D takes m6 and then never reads again (it will not answer connection.close)
    d = b.connect()
    got = get(d.channel(), 1)
    check(names(got) == [('m6', False)], 'D got %r' % names(got))

    check(queue_count(b, 'rq') == 3, 'rq should have m7..m9 ready before the stop')

    t0 = time.monotonic()
    b.proc.send_signal(15)
    for label, c in (('B', bc), ('C', cc)):
        code, text = wait_forced_close(c)
        check(code == 320 and text.startswith('CONNECTION_FORCED'),
              'client %s saw close %s %r, expected 320 CONNECTION_FORCED' % (label, code, text))
    b.term(timeout=15)
    t.report('SIGTERM to exit with one unresponsive client: %.1fs' % (time.monotonic() - t0))
    try:
        d.close()
    except Exception:  # noqa: BLE001  (the broker is gone; D's close cannot work)
        pass

    b.start()
    rec = b.recovery()
    check(rec['clean'] and rec['messages'] == 9, 'recovery after SIGTERM: %r (expected clean, 9)' % rec)
    # a second clean restart with no delivery in between keeps the flags
    b.restart()
    rec = b.recovery()
    check(rec['clean'] and rec['messages'] == 9, 'recovery after the 2nd SIGTERM: %r' % rec)

    got = drain(b, 'rq', expect=9)
    want = [('m0', True), ('m1', True), ('m3', True), ('m4', True), ('m5', True), ('m6', True),
            ('m7', False), ('m8', False), ('m9', False)]
    check(names(got) == want, 'after the restart got\n      %r\n    expected\n      %r'
          % (names(got), want))
    b.term()
