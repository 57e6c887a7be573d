"""Scenario 2: work queue with manual acks and redelivery (應答參數 no_ack).

Worker A receives a task and is SIGKILLed while "working" (before acking).
Worker B, already consuming the same queue, must then get the very same
message with redelivered=True, ack it, and leave the queue empty.
"""
import os
import signal
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main, parse_bytes_repr  # noqa: E402

RECEIVED = r"^ \[x\] Received (b'.*'|b\".*\")$"
REDELIVERED = r"^ \[x\] redelivered=(True|False)$"
READY = r'^ \[\*\] Waiting for messages\. To exit press CTRL\+C$'


def scenario(ctx):
    q = ctx.name('task_queue')
    ctx.cleanup_queues.append(q)
    env = {'QUEUE': q}
    task = 'task %s' % uuid.uuid4().hex

    a = ctx.start('work_queue/worker.py', env=dict(env, WORK_SECONDS=60, TIME_LIMIT=60), name='worker A')
    a.wait_line(READY)
    ctx.run('work_queue/new_task.py', args=[task], env=env)

    m = a.wait_line(RECEIVED, what='worker A did not get the task')
    check(parse_bytes_repr(m.group(1)) == task.encode(), 'worker A got %r, expected %r' % (m.group(1), task))
    m = a.wait_line(REDELIVERED)
    check(m.group(1) == 'False', 'first delivery must have redelivered=False:\n' + a.transcript())
    # A holds the message unacked: nothing ready, one consumer busy
    ctx.wait_counts(q, messages=0, consumers=1, what='while worker A holds the task')

    b = ctx.start('work_queue/worker.py', env=dict(env, WORK_SECONDS=0, STOP_AFTER=1, TIME_LIMIT=30),
                  name='worker B')
    b.wait_line(READY)
    ctx.wait_counts(q, messages=0, consumers=2, what='with workers A and B')
    check(not b.matches(RECEIVED), 'worker B got a message while A still held the only task:\n'
          + b.transcript())

    a.signal(signal.SIGKILL)   # dies before acking
    rc = a.wait_exit(10, expect_rc=None)
    check(rc == -signal.SIGKILL, 'worker A was expected to die of SIGKILL, rc=%s' % rc)
    check(not a.matches(r'^ok$'), 'worker A acked before it was killed:\n' + a.transcript())

    m = b.wait_line(RECEIVED, what='the unacked task of the killed worker was not redelivered to B')
    check(parse_bytes_repr(m.group(1)) == task.encode(), 'worker B got %r, expected %r' % (m.group(1), task))
    m = b.wait_line(REDELIVERED)
    check(m.group(1) == 'True', 'redelivery must have redelivered=True:\n' + b.transcript())
    b.wait_line(r'^ok$')
    b.wait_exit(15)
    check(len(b.matches(RECEIVED)) == 1, 'worker B got more than one message:\n' + b.transcript())
    ctx.wait_counts(q, messages=0, consumers=0, what='after worker B acked the task')


if __name__ == '__main__':
    main(scenario)
