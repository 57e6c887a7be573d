"""Scenario 5: fanout publish/subscribe (發布訂閱 fanout).

A message published while nobody is subscribed is dropped.  Then two
subscribers, each with an exclusive server-named queue (amq.gen-...), must
both get every message, in order.  Their queues vanish when they exit.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main, parse_bytes_repr  # noqa: E402

MESSAGE = r"^ \[x\] (b'.*'|b\".*\")$"
READY = r'^ \[\*\] Waiting for logs\. To exit press CTRL\+C$'


def scenario(ctx):
    x = ctx.name('logs')
    ctx.cleanup_exchanges.append(x)
    env = {'EXCHANGE': x}

    # nobody listening yet: this one must be dropped
    ctx.run('fanout/emit_log.py', args=['info: before any subscriber'], env=env)

    subs = []
    for i in (1, 2):
        s = ctx.start('fanout/receive_logs.py', env=dict(env, TIME_LIMIT=30), name='subscriber %d' % i)
        subs.append(s)
    queues = []
    for s in subs:
        s.wait_line(READY)
        q = s.wait_line(r'^ \[\*\] Queue (.*)$').group(1)
        check(q.startswith('amq.gen-'), 'server-named queue should start with amq.gen-, got %r' % q)
        queues.append(q)
    check(queues[0] != queues[1], 'both subscribers got the same queue name %r' % queues[0])

    messages = ['info: Hello World!'] + ['info: message %d' % i for i in range(1, 6)] + ['END']
    ctx.run('fanout/emit_log.py', args=messages, env=env)

    for s in subs:
        s.wait_line(r"^ \[x\] b'END'$", what='END was not delivered')
        s.wait_exit(15)
        got = [parse_bytes_repr(m.group(1)).decode() for m in s.matches(MESSAGE)]
        check(got == messages, '%s should get every message in order:\n  got      %r\n  expected %r'
              % (s.name, got, messages))

    for q in queues:
        r = ctx.admin('absent', q)
        check(r['absent'], 'exclusive queue %s should be deleted when its connection closed, got %r' % (q, r))


if __name__ == '__main__':
    main(scenario)
