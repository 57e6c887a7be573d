"""Compaction of the message log: disk use follows what is held, not the history, and a crash
in the middle of a compaction loses and duplicates nothing."""
import os
import random
import re
import subprocess
import time

import pika

from durlib import as_failure, check, drain, harness, queue_count, time_limit

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'programs')
SEGMENT_BYTES = 16 * 1024 * 1024


def du_bytes(path):
    return int(subprocess.run(['du', '-sb', path], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def start(t, b, name, env, **extra):
    env = dict(env)
    env.update({k: str(v) for k, v in extra.items()})
    prog = t.program('pika1', os.path.join(PROGRAMS, name), env=env, name=name)
    try:
        prog.wait_line(r'^READY$', timeout=10)
    except harness.ScenarioFailure as e:
        raise as_failure(e)
    return prog


def numbers(prog, tag):
    out = []
    for line in prog.lines():
        p = line.split()
        if p and p[0] == tag:
            out += [int(x) for x in p[1:]]
    return out


def wait_exit(prog, what):
    try:
        prog.wait_exit(30)
    except harness.ScenarioFailure as e:
        raise as_failure(e)
    check(any(l.startswith(('CLOSED', 'DONE')) for l in prog.lines()),
          '%s ended without saying why\n%s' % (what, prog.transcript()))


@time_limit(120)
def test_compaction_frees_what_a_held_message_pins(t):
    """A consumer holds one persistent 4 KiB message of durable queue 'held' unacked while
    16,000 persistent 4,000-byte messages (64 MB, four segments of the log) flow through
    durable queue 'flow' with confirms and are consumed and acked. Without compaction every
    segment would stay (the held message pins the first, and each later one holds acks of
    messages in the one before). The data directory shrinks to at most 2 segments plus
    twice what is held, the log says a compaction ran, and after kill -9 and a restart the
    held message comes back exactly once (redelivered) and 'flow' is empty."""
    b = t.broker().start()
    holder = b.connect()
    hc = holder.channel()
    hc.queue_declare('held', durable=True)
    hc.confirm_delivery()
    hc.basic_publish('', 'held', b'h' * 4096, pika.BasicProperties(delivery_mode=2))
    hc.basic_qos(prefetch_count=1)
    got = []
    hc.basic_consume('held', lambda c, m, p, body: got.append(body), auto_ack=False)
    deadline = time.monotonic() + 10
    while not got:
        check(time.monotonic() < deadline, 'the holder did not get its message')
        holder.process_data_events(time_limit=0.1)
    conn = b.connect()
    conn.channel().queue_declare('flow', durable=True)
    conn.close()
    env = b.env()
    cons = start(t, b, 'batch_consumer.py', env, QUEUE='flow', TIME_LIMIT=5)
    pub = start(t, b, 'split_publisher.py', env, KEEP='held', FLOW='flow', KEEP_EVERY=10**9,
                SIZE=4000, LIMIT=16000, TIME_LIMIT=60)
    deadline = time.monotonic() + 60
    while len(numbers(cons, 'D')) < 16000:
        check(time.monotonic() < deadline, 'only %d of 16000 acked within 60s'
              % len(numbers(cons, 'D')))
        holder.process_data_events(time_limit=0.2)
    wait_exit(pub, 'the publisher')
    check(len(numbers(pub, 'C')) == 16000, 'not every message was confirmed')
    limit = 2 * SEGMENT_BYTES + 2 * 4096 + 64 * 1024     # + the definitions files
    deadline = time.monotonic() + 15
    sizes = []
    while True:
        sizes.append(du_bytes(b.data_dir))
        if sizes[-1] <= limit or time.monotonic() > deadline:
            break
        holder.process_data_events(time_limit=0.5)
    files = b.segment_files()
    log = b.log_text()
    passes = len(re.findall(r'compaction into \d+ done', log))
    t.report('64 MB through flow, one message held: data dir %.1f MB after the traffic (at most '
             '%.1f MB allowed), segment files %s, compaction passes %d'
             % (sizes[-1] / 1e6, limit / 1e6, ' '.join(files), passes))
    check(sizes[-1] <= limit, 'data dir still %d bytes (limit %d): %s' % (sizes[-1], limit, files))
    check(passes >= 1, 'the log shows no finished compaction')
    wait_exit(cons, 'the consumer')
    b.kill()
    b.start()
    got = drain(b, 'held', expect=1)
    check(got[0].body == b'h' * 4096 and got[0].redelivered, 'held came back as %r' % got)
    check(queue_count(b, 'flow') == 0, 'flow holds %s messages after the crash' % queue_count(b, 'flow'))
    b.term()


class Round:
    def __init__(self, t, b, r, rng):
        self.start = r * 10 ** 6
        env = b.env()
        self.cons = start(t, b, 'batch_consumer.py', env, QUEUE='flow', TIME_LIMIT=30)
        self.pub = start(t, b, 'split_publisher.py', env, KEEP='keep', FLOW='flow', KEEP_EVERY=10,
                         SIZE=3000 + r * 500, START=self.start, TIME_LIMIT=40)
        # Kill during the second or a later pass of this start, a random moment into it.
        deadline = time.monotonic() + 40
        while len(re.findall('compacting segments', b.log_text())) < 2:
            check(time.monotonic() < deadline, 'round %d: fewer than 2 compactions in 40s\n%s'
                  % (r, b.log_tail()))
            check(self.pub.alive(), 'round %d: the publisher stopped\n%s' % (r, self.pub.transcript()))
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        b.kill()
        log = b.log_text()
        self.started = len(re.findall('compacting segments', log))
        self.finished = len(re.findall(r'compaction into \d+ done', log))
        wait_exit(self.pub, 'the publisher')
        wait_exit(self.cons, 'the consumer')
        self.published = max(numbers(self.pub, 'P') or [0])
        self.confirmed = set(numbers(self.pub, 'C'))
        self.nacked = numbers(self.pub, 'N')
        self.acked = set(numbers(self.cons, 'A'))
        self.done = set(numbers(self.cons, 'D'))

    def check_queue(self, r, name, got, expect, hold):
        nums = [int(g.body.split(b'|', 1)[0]) for g in got]
        lost = sorted(expect - set(nums) - hold)
        dups = len(nums) - len(set(nums))
        unpublished = [n for n in nums if not self.start <= n <= self.published]
        back = sorted(set(nums) & self.done)
        disorder = [(a, c) for a, c in zip(nums, nums[1:]) if c <= a]
        check(not lost, 'round %d: %s lost %d confirmed messages: %s' % (r, name, len(lost), lost[:10]))
        check(not dups, 'round %d: %s: %d messages came back twice' % (r, name, dups))
        check(not unpublished, 'round %d: %s: never published: %s' % (r, name, unpublished[:10]))
        check(not back, 'round %d: %s: acked (and answered after) but back: %s' % (r, name, back[:10]))
        check(not disorder, 'round %d: %s out of order, e.g. %s' % (r, name, disorder[:3]))
        check(all(g.redelivered for g in got), 'round %d: %s: recovered without redelivered' % (r, name))
        return len(nums)


@time_limit(200)
def test_crash_during_compaction_loses_and_duplicates_nothing(t):
    """Three rounds on one data directory: a publisher with confirms sends numbered
    persistent messages of 3-4.5 KB, every tenth to durable queue 'keep' (never consumed)
    and the rest to 'flow', consumed by a client that acks in batches and after each batch
    makes a round trip, so it knows which acks the broker has processed. With a thin layer
    of held messages in every segment, the log is compacted again and again; the broker is
    killed with SIGKILL a random moment (0-30 ms) after its second compaction of the run
    started, so at least one round is killed with a pass under way. After each restart:
    every confirmed message of 'keep' is there exactly once, in order, redelivered; every
    confirmed message of 'flow' that was not acked is there; no message whose ack the
    broker had answered for comes back; nothing unpublished, nothing twice."""
    rng = random.Random(t.seed + 7)
    b = t.broker().start()
    conn = b.connect()
    ch = conn.channel()
    ch.queue_declare('keep', durable=True)
    ch.queue_declare('flow', durable=True)
    conn.close()
    mid_pass = 0
    for r in (1, 2, 3):
        rd = Round(t, b, r, rng)
        b.start()
        rec = b.recovery()
        keep = drain(b, 'keep', timeout=60)
        flow = drain(b, 'flow', timeout=60)
        confirmed_keep = {n for n in rd.confirmed if n % 10 == 0}
        nk = rd.check_queue(r, 'keep', keep, confirmed_keep, set())
        nf = rd.check_queue(r, 'flow', flow, rd.confirmed - confirmed_keep, rd.acked)
        mid = rd.started > rd.finished
        mid_pass += mid
        t.report('round %d: SIGKILL %s (compactions started %d, finished %d): published %d, '
                 'confirmed %d, nacked %d; keep: %d recovered of %d confirmed; flow: %d recovered, '
                 '%d acked (%d answered); recovery %r'
                 % (r, 'during a compaction' if mid else 'between compactions', rd.started,
                    rd.finished, rd.published - rd.start + 1, len(rd.confirmed), len(rd.nacked),
                    nk, len(confirmed_keep), nf, len(rd.acked), len(rd.done), rec))
        check(not rd.nacked, 'round %d: %d messages nacked' % (r, len(rd.nacked)))
        check(not rec['clean'] and rec['damaged'] == 0, 'round %d: recovery %r' % (r, rec))
    check(mid_pass >= 1, 'no round was killed while a compaction was under way: proves nothing')
    b.term()
