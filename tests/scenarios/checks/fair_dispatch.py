"""Scenario 4: prefetch_count=1 fair dispatch (消息獲取順序).

A slow worker (2 s per task) and a fast worker (no work) share a queue with
basic_qos(prefetch_count=1).  20 tasks are published; since a busy worker
gets nothing until it acks, the fast one must get clearly more (round-robin
without prefetch would split them 10/10).  Every task is processed once.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import ScenarioFailure, check, main, parse_bytes_repr  # noqa: E402

RECEIVED = r"^ \[x\] Received (b'.*'|b\".*\")$"
READY = r'^ \[\*\] Waiting for messages\. To exit press CTRL\+C$'
COUNT = 20


def scenario(ctx):
    q = ctx.name('fair_queue')
    ctx.cleanup_queues.append(q)
    env = {'QUEUE': q}

    slow = ctx.start('fair_dispatch/worker.py', env=dict(env, WORK_SECONDS=2, TIME_LIMIT=50), name='slow worker')
    slow.wait_line(READY)
    fast = ctx.start('fair_dispatch/worker.py', env=dict(env, WORK_SECONDS=0, TIME_LIMIT=50), name='fast worker')
    fast.wait_line(READY)
    ctx.wait_counts(q, messages=0, consumers=2)

    ctx.run('fair_dispatch/new_task.py', env=dict(env, COUNT=COUNT))

    deadline = time.monotonic() + 30
    while True:
        done = len(slow.matches(r'^ok$')) + len(fast.matches(r'^ok$'))
        if done >= COUNT:
            break
        if time.monotonic() > deadline:
            raise ScenarioFailure('only %d of %d tasks were acked within 30s\n%s\n%s'
                                  % (done, COUNT, slow.transcript(), fast.transcript()))
        time.sleep(0.05)

    slow.interrupt()
    fast.interrupt()
    got_slow = [parse_bytes_repr(m.group(1)) for m in slow.matches(RECEIVED)]
    got_fast = [parse_bytes_repr(m.group(1)) for m in fast.matches(RECEIVED)]
    everything = sorted(got_slow + got_fast)
    expected = sorted(('task %d' % i).encode() for i in range(COUNT))
    check(everything == expected,
          'every task must be delivered exactly once; slow got %r, fast got %r' % (got_slow, got_fast))
    check(len(got_fast) >= COUNT - 3 and len(got_slow) <= 3,
          'with prefetch_count=1 the fast worker should get clearly more: slow %d, fast %d'
          % (len(got_slow), len(got_fast)))
    ctx.wait_counts(q, messages=0, consumers=0, what='after both workers stopped')


if __name__ == '__main__':
    main(scenario)
