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


class Round:
    """One round: publisher (and maybe consumer) running, then the broker is stopped."""

    def __init__(self, t, b, queue, with_consumer, delay, stop):
        self.queue = queue
        self.delay = delay
        conn = b.connect()
        conn.channel().queue_declare(queue, durable=True)
        conn.close()
        env = b.env()
        env.update(QUEUE=queue, TIME_LIMIT='30')
        self.cons = None
        try:
            if with_consumer:
                self.cons = t.program('pika1', os.path.join(PROGRAMS, 'crash_consumer.py'), env=env,
                                      name='consumer %s' % queue)
                self.cons.wait_line(r'^READY$', timeout=10)
            self.pub = t.program('pika1', os.path.join(PROGRAMS, 'crash_publisher.py'), env=env,
                                 name='publisher %s' % queue)
            self.pub.wait_line(r'^READY$', timeout=10)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        time.sleep(delay)
        stop()
        wait_gone(self.pub, 'the publisher')
        if self.cons:
            wait_gone(self.cons, 'the consumer')
        self.published = max(numbers(self.pub, 'P') or [0])
        self.confirmed = numbers(self.pub, 'C')
        self.nacked = numbers(self.pub, 'N')
        self.received = []
        self.acked = set()
        if self.cons:
            for line in self.cons.lines():
                p = line.split()
                if p and p[0] == 'R':
                    self.received.append((int(p[1]), p[2] == '1'))
                elif p and p[0] == 'A':
                    self.acked.add(int(p[1]))

    def drain(self, b):
        """Drain the queue after the restart and compute the figures."""
        self.got = drain(b, self.queue, timeout=60)
        self.nums = []
        self.bad_body = []
        for g in self.got:
            try:
                n = int(g.body.split(b'|', 1)[0])
            except ValueError:
                n = -1
            self.nums.append(n)
            if g.body != body(n):
                self.bad_body.append(n)
        self.recovered = set(self.nums)
        self.lost = sorted(set(self.confirmed) - self.recovered - self.acked)
        self.dups = len(self.nums) - len(self.recovered)
        self.flagged = [n for n, g in zip(self.nums, self.got) if g.redelivered]
        self.unpublished = sorted(n for n in self.recovered if not 1 <= n <= self.published)
        self.disorder = [(a, c) for a, c in zip(self.nums, self.nums[1:]) if c <= a]
        self.seen_twice = self.recovered & {n for n, _ in self.received}
        self.unacked = {n for n, _ in self.received} - self.acked

    def figures(self, r, rec):
        cons = self.cons is not None
        return ('round %d: %s after %.2fs%s: published %d, confirmed %d, recovered %d, lost %d'
                '%s (nacked %d, recovered unconfirmed %d, redelivered %d, seen again %d%s; '
                'store: %d segments, torn tail %d bytes)'
                % (r, 'SIGKILL' if not rec['clean'] else 'SIGTERM', self.delay,
                   ', consumer' if cons else '', self.published, len(self.confirmed),
                   len(self.nums), len(self.lost),
                   '' if not cons else ', consumed %d, acked %d' % (len(self.received), len(self.acked)),
                   len(self.nacked), len(self.recovered - set(self.confirmed)), len(self.flagged),
                   len(self.seen_twice),
                   '' if not cons else ', received-unacked %d (%d recovered)'
                   % (len(self.unacked), len(self.unacked & self.recovered)),
                   rec['segments'], rec['torn_bytes']))

    def check_common(self, r):
        check(self.confirmed, 'round %d: nothing was confirmed in %.2fs - the round proves nothing\n%s'
              % (r, self.delay, self.pub.transcript()))
        check(len(set(self.confirmed)) == len(self.confirmed), 'round %d: a number was confirmed twice' % r)
        check(not self.lost, 'round %d: %d confirmed messages lost: %s' % (r, len(self.lost), self.lost[:20]))
        check(not self.nacked, 'round %d: %d messages nacked: %s' % (r, len(self.nacked), self.nacked[:20]))
        check(not self.bad_body, 'round %d: damaged bodies for %s' % (r, self.bad_body[:20]))
        check(self.dups == 0, 'round %d: %d numbers came back more than once' % (r, self.dups))
        check(not self.unpublished, 'round %d: never-published numbers came back: %s'
              % (r, self.unpublished[:20]))
        check(not self.disorder, 'round %d: publish order not kept, e.g. %s' % (r, self.disorder[:5]))
        check(all(not red for _, red in self.received),
              'round %d: the concurrent consumer got redelivered=True before any stop' % r)


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
        rd = Round(t, b, q, with_consumer=r % 2 == 0, delay=rng.uniform(0.2, 2.0), stop=b.kill)
        b.start()
        rec = b.recovery()
        rd.drain(b)
        total_lost += len(rd.lost)
        t.report(rd.figures(r, rec))
        check(not rec['clean'], 'round %d: recovery after SIGKILL reported a clean stop: %r' % (r, rec))
        rd.check_common(r)
        not_flagged = sorted(rd.recovered - set(rd.flagged))
        check(not not_flagged, 'round %d: %d recovered messages have redelivered=False after a '
              'crash, e.g. %s' % (r, len(not_flagged), not_flagged[:20]))

    b.restart()
    for q in queues:
        check(queue_count(b, q) == 0, '%s: %s after the final clean restart, expected 0'
              % (q, queue_count(b, q)))
    t.report('total lost over %d rounds: %d (seed %d)' % (t.rounds, total_lost, t.seed))
    b.term()


@time_limit(60)
def test_clean_stop_under_load(t):
    """The same publisher (and, in the second round, the concurrent consumer with prefetch
    50) while the broker is stopped with SIGTERM at a random moment 0.3-1.5 s in: the
    broker exits with status 0 within its grace period, both clients are told 320
    CONNECTION_FORCED, the store reports a clean stop, and after the restart every
    confirmed number is there (unless acked), with exact redelivered flags: False for
    every message the consumer never got, True for every one it got and that still came
    back, and at most the prefetch window (50) flagged in all."""
    rng = random.Random(t.seed + 1)
    b = t.broker().start()
    for r in (1, 2):
        q = 'term.round%d' % r
        rd = Round(t, b, q, with_consumer=r == 2, delay=rng.uniform(0.3, 1.5), stop=b.term)
        for prog, what in ((rd.pub, 'publisher'), (rd.cons, 'consumer')):
            if prog is not None:
                closed = [l for l in prog.lines() if l.startswith('CLOSED')]
                check(closed and '320' in closed[0] and 'CONNECTION_FORCED' in closed[0],
                      'round %d: the %s was not closed with 320 CONNECTION_FORCED: %r'
                      % (r, what, closed))
        b.start()
        rec = b.recovery()
        rd.drain(b)
        t.report(rd.figures(r, rec))
        check(rec['clean'], 'round %d: recovery after SIGTERM reported an unclean stop: %r' % (r, rec))
        rd.check_common(r)
        received = {n for n, _ in rd.received}
        wrong = sorted(n for n in rd.recovered - set(rd.flagged) if n in received)
        check(not wrong, 'round %d: delivered before the stop but redelivered=False: %s' % (r, wrong[:20]))
        check(len(rd.flagged) <= 50, 'round %d: %d messages flagged redelivered, more than the '
              'consumer could hold (50): %s' % (r, len(rd.flagged), rd.flagged[:20]))
        if rd.cons is None:
            check(not rd.flagged, 'round %d: no consumer, yet %d messages came back redelivered=True'
                  % (r, len(rd.flagged)))
    b.term()


@time_limit(60)
def test_crash_during_declarations(t):
    """Three rounds on one data directory: a client declares durable queues and binds
    them to a durable topic exchange as fast as the broker answers, deleting every third
    one's predecessor, while the broker is killed (SIGKILL) 0.2-1 s in. The broker must
    start again every time (the definitions file is never left half-written), every queue
    whose declare and bind were answered and whose deletion was not requested exists and
    is bound (a mandatory publish to its key reaches it), and every queue whose deletion
    was answered is gone."""
    rng = random.Random(t.seed + 2)
    b = t.broker().start()
    for r in (1, 2, 3):
        prefix = 'defs%d' % r
        env = b.env()
        env['PREFIX'] = prefix
        prog = t.program('pika1', os.path.join(PROGRAMS, 'declarer.py'), env=env,
                         name='declarer round %d' % r)
        try:
            prog.wait_line(r'^READY$', timeout=10)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        delay = rng.uniform(0.2, 1.0)
        time.sleep(delay)
        b.kill()
        wait_gone(prog, 'the declarer')
        declared = set(numbers(prog, 'D'))
        deleted = set(numbers(prog, 'X'))
        top = max(declared or [0])
        delete_requested = {i - 1 for i in range(3, top + 2, 3)}
        b.start()
        rec = b.recovery()
        conn = b.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        missing, unbound, back = [], [], []
        for i in sorted(declared - delete_requested):
            q = '%s.q%d' % (prefix, i)
            try:
                ch.queue_declare(q, passive=True)
            except Exception:  # noqa: BLE001  (404 closes the channel)
                missing.append(i)
                ch = conn.channel()
                ch.confirm_delivery()
                continue
            try:
                ch.basic_publish(prefix + '.x', 'k%d' % i, b'probe', mandatory=True)
            except Exception:  # noqa: BLE001  (UnroutableError)
                unbound.append(i)
        conn.close()
        for i in sorted(deleted):
            if queue_count(b, '%s.q%d' % (prefix, i)) is not None:
                back.append(i)
        t.report('round %d: SIGKILL after %.2fs: %d queues declared and bound, %d deleted; '
                 'missing %d, unbound %d, deleted but back %d (recovery: %r)'
                 % (r, delay, len(declared), len(deleted), len(missing), len(unbound), len(back), rec))
        check(declared, 'round %d: nothing was declared in %.2fs' % (r, delay))
        check(not missing, 'round %d: declared queues missing after the crash: %s' % (r, missing[:20]))
        check(not unbound, 'round %d: bindings lost after the crash for queues %s' % (r, unbound[:20]))
        check(not back, 'round %d: deleted queues came back after the crash: %s' % (r, back[:20]))
    b.term()
