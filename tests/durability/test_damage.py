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


@time_limit(40)
def test_headerless_segment_from_a_crash_during_rotation(t):
    """A crash right after the log created its next segment file but before the file's
    header reached the disk leaves an empty newest segment (simulated: an empty
    NNNNNNNNNN.seg numbered after the newest one, after a SIGKILL). The broker starts,
    removes it, recovers the messages of the older segments, and afterwards still removes
    finished segments: after ~70 MB of persistent messages published and acked (several
    rotations), at most 2 segment files remain."""
    b = t.broker().start()
    publish_confirmed(b, 'rot', [b'before %d' % i for i in range(3)])
    b.kill()
    segs = b.segment_files()
    newest = int(segs[-1].split('.')[0])
    open(os.path.join(b.data_dir, 'msgs', '%010d.seg' % (newest + 1)), 'wb').close()
    b.start()
    rec = b.recovery()
    check(rec['messages'] == 3, 'expected the 3 messages back, recovery: %r' % rec)
    got = [g.body for g in drain(b, 'rot')]
    check(got == [b'before %d' % i for i in range(3)], 'got %r' % got)

    conn = b.connect()
    ch = conn.channel()
    body = b'y' * 100000
    for i in range(700):
        ch.basic_publish('', 'rot', body, pika.BasicProperties(delivery_mode=2))
        method, _, _ = ch.basic_get('rot', auto_ack=False)
        check(method is not None, 'basic.get returned nothing after publish %d' % i)
        ch.basic_ack(method.delivery_tag)
    ch.queue_declare('rot', passive=True)   # a round trip: every ack is in
    conn.close()
    files = b.segment_files()
    nums = [int(f.split('.')[0]) for f in files]
    warnings = [l for l in b.log_text().splitlines() if 'cannot remove segment' in l]
    t.report('segment files after 70 MB published and acked: %s; "cannot remove segment" '
             'warnings: %d' % (' '.join(files), len(warnings)))
    check(max(nums) >= newest + 4, 'the log did not rotate as expected: %s' % files)
    check(len(files) <= 2, '%d segment files remain after everything was acked: %s (%s)'
          % (len(files), files, warnings[0] if warnings else 'no warning'))
    b.term()


@time_limit(30)
def test_unreadable_store_refuses_to_start(t):
    """A data directory whose definitions file or an older log segment is not coney's
    (here: overwritten with garbage) is not silently replaced by an empty store: the
    broker refuses to start, exits with status 73 (EX_CANTCREAT, the data-dir status)
    within a few seconds, and names the file in its log."""
    import subprocess
    cases = {'definitions.dat': 'definitions.dat', os.path.join('msgs', '0000000001.seg'): '0000000001.seg'}
    for rel, name in cases.items():
        b = t.broker(label='garbage')
        b.start()
        publish_confirmed(b, 'kept', [b'one'])
        b.term()
        if rel.startswith('msgs'):
            # make 0000000001.seg an older segment: the next start writes 0000000002.seg
            b.start()
            b.term()
        with open(os.path.join(b.data_dir, rel), 'wb') as f:
            f.write(b'this is not a coney file at all' * 4)
        with open(b.log_path, 'ab') as log:
            proc = subprocess.Popen(b.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            check(False, 'coney started on a data dir with a garbage %s' % rel)
        tail = b.log_text(whole=True).splitlines()[-3:]
        last = tail[-1].split('] ', 1)[-1].replace(b.data_dir, 'DATA_DIR') if tail else ''
        t.report('garbage %s: exit status %s, log: %s' % (rel, rc, last))
        check(rc == 73, 'garbage %s: exit status %s, expected 73' % (rel, rc))
        check(any(name in l for l in tail), 'garbage %s: the log does not name the file: %r' % (rel, tail))
