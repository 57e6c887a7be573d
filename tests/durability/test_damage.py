"""What a crash in the middle of a write leaves behind."""
import os

import pika

from durlib import check, drain, queue_count, time_limit


def publish_confirmed(b, queue, bodies):
    conn = b.connect()
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish('', queue, body, pika.BasicProperties(delivery_mode=2))
    conn.close()


@time_limit(30)
def test_torn_tail_loses_only_the_torn_message(t):
    """A crash in the middle of a write, simulated after a SIGKILL by cutting the last
    300 bytes off the newest log segment (inside the last ~1 KB publish record) and by
    leaving a half-written definitions.dat.tmp: the broker starts, reports the torn tail,
    recovers every other message (m0..m8, in order, redelivered=True) with its
    definitions, and keeps working - messages published afterwards survive another
    crash."""
    b = t.broker().start()
    publish_confirmed(b, 'torn', [b'm%d|' % i + b'x' * 1000 for i in range(10)])
    b.kill()
    segs = b.segment_files()
    check(segs, 'no segment files after publishing')
    path = os.path.join(b.data_dir, 'msgs', segs[-1])
    size = os.path.getsize(path)
    check(size > 2000, 'newest segment %s is only %d bytes' % (segs[-1], size))
    os.truncate(path, size - 300)
    with open(os.path.join(b.data_dir, 'definitions.dat.tmp'), 'wb') as f:
        f.write(b'half a definitions file')

    b.start()
    rec = b.recovery()
    t.report('recovered after a torn write: %r' % rec)
    check(rec['torn_bytes'] > 0, 'the torn tail was not reported: %r' % rec)
    check(rec['messages'] == 9, 'expected 9 messages recovered, got %r' % rec)
    got = drain(b, 'torn')
    names = [g.body.split(b'|')[0].decode() for g in got]
    check(names == ['m%d' % i for i in range(9)], 'after the torn write got %r' % names)
    check(all(g.redelivered for g in got), 'redelivered=False after a crash')
    check(all(g.body.endswith(b'x' * 1000) for g in got), 'damaged bodies')

    publish_confirmed(b, 'torn', [b'n%d' % i for i in range(5)])
    b.restart(clean=False)
    got = [g.body for g in drain(b, 'torn')]
    check(got == [b'n%d' % i for i in range(5)], 'after another crash got %r' % got)
    b.restart()
    check(queue_count(b, 'torn') == 0, 'torn queue not empty after the final restart')
    b.term()
