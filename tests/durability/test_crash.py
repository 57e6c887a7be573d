"""Crash test: SIGKILL at random moments under confirmed publishing."""
import os
import random
import time

from durlib import as_failure, check, drain, harness, queue_count, time_limit

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'programs')


def body(n):   # as in programs/crash_publisher.py
    return ('%d|' % n).encode() + bytes([n % 251]) * ((n * 7919) % 3001)


def numbers(prog, tag):
    out = []
    for line in prog.lines():
        parts = line.split()
        if parts and parts[0] == tag:
            out += [int(x) for x in parts[1:]]
    return out


def wait_gone(prog, what):
    try:
        prog.wait_exit(15)
    except harness.ScenarioFailure as e:
        raise as_failure(e)
    check(any(l.startswith('CLOSED') for l in prog.lines()),
          '%s exited without noticing the crash\n%s' % (what, prog.transcript()))


@time_limit(150)
def test_crash_loses_no_confirmed_message(t):
    """Several rounds (default 5) on one data directory: a publisher process publishes
    numbered persistent messages (bodies of 2 to 3000 bytes, so segments rotate) to a
    durable queue with publisher confirms, up to 200 unconfirmed, and reports each
    confirmed number on its stdout as the confirm arrives; in every other round a
    consumer with manual acks (prefetch 50) runs concurrently. The broker is killed with
    SIGKILL at a random moment 0.2-2 s into publishing, restarted, and the queue drained.
    Proves: every confirmed number is there (lost = 0) unless the concurrent consumer
    acked it; the store reports an unclean stop; every recovered message has
    redelivered=True (so a copy also seen by the consumer is flagged); no number comes
    back twice; nothing unpublished appears; bodies are intact; the order of publishing is
    kept; nothing is nacked. At the end a clean restart shows every round's queue, empty."""
    rng = random.Random(t.seed)
    b = t.broker().start()
    queues = []
    total_lost = 0
    for r in range(1, t.rounds + 1):
        q = 'crash.round%d' % r
        queues.append(q)
        conn = b.connect()
        conn.channel().queue_declare(q, durable=True)
        conn.close()
        with_consumer = r % 2 == 0
        env = b.env()
        env.update(QUEUE=q, TIME_LIMIT='30')
        cons = None
        try:
            if with_consumer:
                cons = t.program('pika1', os.path.join(PROGRAMS, 'crash_consumer.py'), env=env,
                                 name='consumer round %d' % r)
                cons.wait_line(r'^READY$', timeout=10)
            pub = t.program('pika1', os.path.join(PROGRAMS, 'crash_publisher.py'), env=env,
                            name='publisher round %d' % r)
            pub.wait_line(r'^READY$', timeout=10)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        delay = rng.uniform(0.2, 2.0)
        time.sleep(delay)
        b.kill()
        wait_gone(pub, 'the publisher')
        if cons:
            wait_gone(cons, 'the consumer')

        published = max(numbers(pub, 'P') or [0])
        confirmed = numbers(pub, 'C')
        nacked = numbers(pub, 'N')
        received = []
        acked = set()
        if cons:
            for line in cons.lines():
                p = line.split()
                if p and p[0] == 'R':
                    received.append((int(p[1]), p[2] == '1'))
                elif p and p[0] == 'A':
                    acked.add(int(p[1]))

        b.start()
        rec = b.recovery()
        got = drain(b, q, timeout=60)
        nums = []
        bad_body = []
        for g in got:
            try:
                n = int(g.body.split(b'|', 1)[0])
            except ValueError:
                n = -1
            nums.append(n)
            if g.body != body(n):
                bad_body.append(n)
        recovered = set(nums)
        lost = sorted(set(confirmed) - recovered - acked)
        dups = len(nums) - len(recovered)
        not_flagged = [n for n, g in zip(nums, got) if not g.redelivered]
        unpublished = sorted(n for n in recovered if not 1 <= n <= published)
        disorder = [(a, c) for a, c in zip(nums, nums[1:]) if c <= a]
        seen_twice = recovered & {n for n, _ in received}
        unacked = {n for n, _ in received} - acked
        total_lost += len(lost)
        t.report('round %d: kill after %.2fs%s: published %d, confirmed %d, recovered %d, lost %d'
                 '%s (nacked %d, recovered unconfirmed %d, redelivered duplicates %d%s; '
                 'store: %d segments, torn tail %d bytes)'
                 % (r, delay, ', consumer' if cons else '', published, len(confirmed), len(nums),
                    len(lost), '' if not cons else ', consumed %d, acked %d' % (len(received), len(acked)),
                    len(nacked), len(recovered - set(confirmed)), len(seen_twice),
                    '' if not cons else ', received-unacked %d (%d recovered)'
                    % (len(unacked), len(unacked & recovered)),
                    rec['segments'], rec['torn_bytes']))

        check(not rec['clean'], 'round %d: recovery after SIGKILL reported a clean stop: %r' % (r, rec))
        check(confirmed, 'round %d: nothing was confirmed in %.2fs - the round proves nothing\n%s'
              % (r, delay, pub.transcript()))
        check(len(set(confirmed)) == len(confirmed), 'round %d: a number was confirmed twice' % r)
        check(not lost, 'round %d: %d confirmed messages lost: %s' % (r, len(lost), lost[:20]))
        check(not nacked, 'round %d: %d messages nacked: %s' % (r, len(nacked), nacked[:20]))
        check(not bad_body, 'round %d: damaged bodies for %s' % (r, bad_body[:20]))
        check(dups == 0, 'round %d: %d numbers came back more than once' % (r, dups))
        check(not unpublished, 'round %d: never-published numbers came back: %s' % (r, unpublished[:20]))
        check(not not_flagged, 'round %d: %d recovered messages have redelivered=False after a '
              'crash, e.g. %s' % (r, len(not_flagged), not_flagged[:20]))
        check(not disorder, 'round %d: publish order not kept, e.g. %s' % (r, disorder[:5]))
        check(all(not red for _, red in received),
              'round %d: the concurrent consumer got redelivered=True before any crash' % r)

    b.restart()
    for q in queues:
        check(queue_count(b, q) == 0, '%s: %s after the final clean restart, expected 0'
              % (q, queue_count(b, q)))
    t.report('total lost over %d rounds: %d (seed %d)' % (t.rounds, total_lost, t.seed))
    b.term()
