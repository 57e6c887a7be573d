"""Scenario: delayed retry with TTL + dead-letter exchange (pika 1.x only).

A work queue dead-letters rejected jobs into a retry queue whose x-message-ttl (RETRY_MS)
sends them back through its own dead-letter exchange. The worker rejects every job until
its third delivery, reading the attempt number from the x-death header. Checked: each of
the two jobs is seen three times, the x-death counts grow 0, 1, 2 (rejected from the work
queue, expired from the retry queue), every retry waits at least the TTL, each job is
acknowledged on its third attempt, and both queues end empty.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main  # noqa: E402

RETRY_MS = 500
ATTEMPT = (r'^ \[x\] (job-\d) attempt (\d) at ([\d.]+) '
           r'\(x-death: rejected (\d+), expired (\d+)\)$')


def scenario(ctx):
    work, retry = ctx.name('work'), ctx.name('work.retry')
    ctx.cleanup_queues += [work, retry]
    env = {'WORK_QUEUE': work, 'RETRY_QUEUE': retry, 'RETRY_MS': RETRY_MS}
    ctx.run('retry_ttl_dlx/declare.py', env=env)
    worker = ctx.start('retry_ttl_dlx/worker.py', env=dict(env, STOP_AFTER=2, TIME_LIMIT=30),
                       name='worker')
    worker.wait_line(r'^ \[\*\] Waiting for jobs')
    ctx.run('retry_ttl_dlx/send.py', args=['job-1', 'job-2'], env=env)
    worker.wait_exit(30)
    for job in ('job-1', 'job-2'):
        seen = [m for m in worker.matches(ATTEMPT) if m.group(1) == job]
        got = [(int(m.group(2)), int(m.group(4)), int(m.group(5))) for m in seen]
        check(got == [(1, 0, 0), (2, 1, 1), (3, 2, 2)],
              '%s: (attempt, rejected count, expired count) %r, expected three attempts '
              'with x-death counts 0, 1, 2\n%s' % (job, got, worker.transcript()))
        times = [float(m.group(3)) for m in seen]
        waits = [b - a for a, b in zip(times, times[1:])]
        check(all(w >= RETRY_MS / 1000.0 * 0.9 for w in waits),
              '%s: a retry came back before the %d ms TTL: waits %r' % (job, RETRY_MS, waits))
        check(worker.matches(r'^ \[\.\] %s done after 3 attempts$' % re.escape(job)),
              '%s was not finished on its third attempt\n%s' % (job, worker.transcript()))
    ctx.wait_counts(work, messages=0, consumers=0, what='work queue at the end')
    ctx.wait_counts(retry, messages=0, consumers=0, what='retry queue at the end')


if __name__ == '__main__':
    main(scenario)
