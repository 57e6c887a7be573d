"""Scenario: a priority work queue (pika 1.x only).

A producer publishes a backlog of 20 tasks with priorities 0..9 (twice over) to a queue
with x-max-priority 9 before any worker runs; a worker taking one task at a time must see
them highest priority first, and in publish order within one priority, each with its
priority property intact.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main  # noqa: E402

COUNT = 20
RECEIVED = r'^ \[x\] Received task-(\d\d) p=(\d) \(priority property (\d)\)$'


def scenario(ctx):
    q = ctx.name('priority_tasks')
    ctx.cleanup_queues.append(q)
    env = {'QUEUE': q}
    ctx.run('priority_queue/new_task.py', env=dict(env, COUNT=COUNT))
    ctx.wait_counts(q, messages=COUNT, consumers=0, what='backlog before the worker')
    worker = ctx.start('priority_queue/worker.py', env=dict(env, STOP_AFTER=COUNT, TIME_LIMIT=30),
                       name='worker')
    worker.wait_exit(30)
    got = [(int(m.group(1)), int(m.group(2)), int(m.group(3))) for m in worker.matches(RECEIVED)]
    check(all(p == prop for _, p, prop in got), 'priority property changed: %r' % got)
    order = [(n, p) for n, p, _ in got]
    want = sorted(((i, i % 10) for i in range(COUNT)), key=lambda t: (-t[1], t[0]))
    check(order == want, 'tasks came as %r\n    expected %r' % (order, want))
    ctx.wait_counts(q, messages=0, consumers=0, what='after the worker')


if __name__ == '__main__':
    main(scenario)
