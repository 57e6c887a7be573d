"""What was settled before a crash stays settled; definitions survive a crash too."""
import pika

from durlib import check, drain, exchange_exists, queue_count, time_limit


def names(got):
    return [(g.body.decode(), g.redelivered) for g in got]


@time_limit(45)
def test_settlements_and_definitions_survive_crash(t):
    """A crash (SIGKILL) loses nothing that was settled and nothing that was declared:
    durable exchanges, queues and bindings declared just before the crash exist and
    route afterwards; a persistent message fanned out to two durable queues (and a
    non-durable one) is kept per queue - acked in one queue, it is still in the other; a
    purged durable queue stays empty; a deleted durable queue stays deleted, and a new
    queue of the same name does not inherit its old messages; acked messages stay acked.
    After the crash every recovered message, delivered before or not, has
    redelivered=True, and the unacked ones keep their order."""
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare('fan', 'fanout', durable=True)
    ch.exchange_declare('top', 'topic', durable=True)
    for q, durable in (('f1', True), ('f2', True), ('f3', False), ('p', True), ('del', True),
                       ('late', True)):
        ch.queue_declare(q, durable=durable)
    for q in ('f1', 'f2', 'f3'):
        ch.queue_bind(q, 'fan')
    persistent = pika.BasicProperties(delivery_mode=2)
    for i in range(10):
        ch.basic_publish('fan', '', b'm%d' % i, persistent, mandatory=True)
        ch.basic_publish('', 'p', b'p%d' % i, persistent)
        ch.basic_publish('', 'del', b'd%d' % i, persistent)
    # f1: four acked, two held unacked at the crash
    got = []
    for _ in range(6):
        method, props, body = ch.basic_get('f1', auto_ack=False)
        check(method is not None, 'basic.get f1 returned empty')
        got.append((method.delivery_tag, body))
    for tag, _ in got[:4]:
        ch.basic_ack(tag)
    check(ch.queue_purge('p').method.message_count == 10, 'purge of p should report 10')
    check(ch.queue_delete('del').method.message_count == 10, 'delete of del should report 10')
    # declared last, just before the crash
    ch.queue_bind('late', 'top', 'late.#')
    ch.exchange_bind(destination='top', source='fan', routing_key='')
    check(queue_count(b, 'f1') == 4 and queue_count(b, 'f2') == 10 and queue_count(b, 'p') == 0,
          'counts before the crash: f1=%s f2=%s p=%s' % (queue_count(b, 'f1'), queue_count(b, 'f2'),
                                                         queue_count(b, 'p')))

    b.kill()
    b.start()
    rec = b.recovery()
    check(not rec['clean'], 'recovery after SIGKILL reported a clean shutdown: %r' % rec)
    t.report('recovered after SIGKILL: %r' % rec)
    check(rec['messages'] == 10, 'the store should recover 10 messages (m0..m9, one record for '
          'f1 and f2), got %r' % rec)

    check(queue_count(b, 'f3') is None, 'non-durable f3 survived the crash')
    check(queue_count(b, 'del') is None, 'deleted queue del came back after the crash')
    check(queue_count(b, 'p') == 0, 'purged queue p: %s messages after the crash, expected 0'
          % queue_count(b, 'p'))
    check(exchange_exists(b, 'fan') and exchange_exists(b, 'top'), 'durable exchanges lost')

    got = drain(b, 'f1')
    want = [('m%d' % i, True) for i in range(4, 10)]
    check(names(got) == want, 'f1 after the crash: %r, expected %r' % (names(got), want))
    got = drain(b, 'f2')
    want = [('m%d' % i, True) for i in range(10)]
    check(names(got) == want, 'f2 after the crash: %r, expected %r' % (names(got), want))

    conn = b.connect()
    ch = conn.channel()
    ch.queue_declare('del', durable=True)
    ch.confirm_delivery()
    # fan -> f1, f2 and (through the exchange binding declared last) top -> late
    ch.basic_publish('fan', 'late.x', b'after', persistent, mandatory=True)
    conn.close()
    check(queue_count(b, 'del') == 0, "a new queue named 'del' has %s old messages"
          % queue_count(b, 'del'))
    for q in ('f1', 'f2', 'late'):
        got = [g.body for g in drain(b, q)]
        check(got == [b'after'], '%s after the crash got %r from fan, expected [after]' % (q, got))

    # everything settled: a crash now brings nothing back
    b.restart(clean=False)
    rec = b.recovery()
    check(rec['messages'] == 0, 'after draining and another crash the store recovered %r' % rec)
    for q in ('f1', 'f2', 'p', 'del', 'late'):
        check(queue_count(b, q) == 0, '%s: %s messages after the final crash' % (q, queue_count(b, q)))
    b.term()


@time_limit(45)
def test_every_kind_of_settlement_survives_crash(t):
    """Every way a persistent message can leave a durable queue is recorded before a
    crash (SIGKILL) and is not undone by recovery: consumed by an auto-ack consumer,
    basic.get with no-ack, basic.reject and basic.nack (multiple) with requeue=false,
    acks committed in a transaction; while what must stay does: a basic.reject with
    requeue=true, acks rolled back in a transaction, persistent messages published in a
    committed transaction. Uncommitted transactional publishes are not there. A 20 MB
    persistent message (larger than a log segment) survives the crash byte for byte."""
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    persistent = pika.BasicProperties(delivery_mode=2)
    queues = ('auto', 'getnoack', 'reject', 'nack', 'txack', 'txpub', 'big')
    for q in queues:
        ch.queue_declare(q, durable=True)
    for q in queues[:-1]:
        for i in range(6):
            ch.basic_publish('', q, ('%s%d' % (q, i)).encode(), persistent)
    big = bytes(range(256)) * (20 * 1024 * 1024 // 256)
    ch.basic_publish('', 'big', big, persistent)
    ch.queue_declare('big', passive=True)     # a round trip: everything above is in

    # auto-ack consumer takes 4
    got = []
    ch.basic_qos(prefetch_count=0)
    tag = ch.basic_consume('auto', lambda c, m, p, body: got.append(body), auto_ack=True)
    while len(got) < 6:
        conn.process_data_events(time_limit=0.1)
    ch.basic_cancel(tag)
    # basic.get no-ack takes 3
    for _ in range(3):
        check(ch.basic_get('getnoack', auto_ack=True)[0] is not None, 'get no-ack: empty')
    # reject: 2 dropped, 1 requeued
    tags = [ch.basic_get('reject', auto_ack=False)[0].delivery_tag for _ in range(3)]
    ch.basic_reject(tags[0], requeue=False)
    ch.basic_reject(tags[1], requeue=False)
    ch.basic_reject(tags[2], requeue=True)
    # nack multiple requeue=false: 4 dropped
    tags = [ch.basic_get('nack', auto_ack=False)[0].delivery_tag for _ in range(4)]
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    ch.close()

    # transactions on a second channel
    tx = conn.channel()
    tx.tx_select()
    tags = [tx.basic_get('txack', auto_ack=False)[0].delivery_tag for _ in range(4)]
    tx.basic_ack(tags[0])
    tx.basic_ack(tags[1])
    tx.tx_commit()                          # txack0, txack1 acked
    tx.basic_ack(tags[2])
    tx.basic_ack(tags[3])
    tx.tx_rollback()                        # txack2, txack3 stay unacked
    tx.basic_publish('', 'txpub', b'committed', persistent)
    tx.tx_commit()
    tx.basic_publish('', 'txpub', b'never committed', persistent)
    check(queue_count(b, 'txpub') == 7, 'txpub should hold 6 + 1 committed before the crash, has %s'
          % queue_count(b, 'txpub'))

    b.kill()
    b.start()
    expect = {
        'auto': [],
        'getnoack': ['getnoack3', 'getnoack4', 'getnoack5'],
        'reject': ['reject2', 'reject3', 'reject4', 'reject5'],
        'nack': ['nack4', 'nack5'],
        'txack': ['txack2', 'txack3', 'txack4', 'txack5'],
        'txpub': ['txpub%d' % i for i in range(6)] + ['committed'],
    }
    for q, want in expect.items():
        got = drain(b, q)
        names_ = [g.body.decode() for g in got]
        check(names_ == want, '%s after the crash: %r, expected %r' % (q, names_, want))
        check(all(g.redelivered for g in got), '%s: redelivered=False after a crash' % q)
    got = drain(b, 'big', expect=1)
    check(got[0].body == big, 'the 20 MB message changed (length %d, expected %d)'
          % (len(got[0].body), len(big)))
    t.report('recovered after SIGKILL: %r' % b.recovery())
    b.term()
