"""Scenario 3: durable queue + persistent message (durable:消息不丟失).

send.py declares a durable queue and publishes with delivery_mode=2;
redeclaring the queue as non-durable must fail with 406 PRECONDITION_FAILED;
receive.py gets the message with delivery_mode=2 and acks it.
(Broker restart is not part of this scenario.)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main, parse_bytes_repr  # noqa: E402

RECEIVED = r"^ \[x\] Received (b'.*'|b\".*\")$"


def scenario(ctx):
    q = ctx.name('durable_hello')
    ctx.cleanup_queues.append(q)
    env = {'QUEUE': q}

    ctx.run('durable/send.py', env=env).wait_line(r"^ \[x\] Sent 'Hello World!'$", timeout=1)
    ctx.wait_counts(q, messages=1, consumers=0, what='after send')

    r = ctx.admin('redeclare', q, 'durable=0')
    check(not r['ok'] and r['code'] == 406,
          'redeclaring durable queue as non-durable should fail with 406, got %r' % r)
    r = ctx.admin('redeclare', q, 'durable=1')
    check(r['ok'], 'redeclaring the durable queue as durable should succeed, got %r' % r)

    recv = ctx.start('durable/receive.py', env=dict(env, WORK_SECONDS=0.2, STOP_AFTER=1, TIME_LIMIT=30))
    recv.wait_line(r'^ \[\*\] Waiting for messages\. To exit press CTRL\+C$')
    m = recv.wait_line(RECEIVED, what='the persistent message was not delivered')
    check(parse_bytes_repr(m.group(1)) == b'Hello World!', 'got body %r' % m.group(1))
    m = recv.wait_line(r'^ \[x\] delivery_mode=(.*)$')
    check(m.group(1) in ('2', '<DeliveryMode.Persistent: 2>'),
          'delivery_mode should be 2, got %s' % m.group(1))
    recv.wait_line(r'^ok$')
    recv.wait_exit(15)
    ctx.wait_counts(q, messages=0, consumers=0, what='after the ack')


if __name__ == '__main__':
    main(scenario)
