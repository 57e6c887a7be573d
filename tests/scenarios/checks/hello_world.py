"""Scenario 1: hello world (簡單示例).

send.py puts 'Hello World!' into a queue (before any consumer exists, so it
must wait in the queue), receive.py gets it, a second send.py is delivered
live to the waiting consumer.  The tutorial's consumer uses manual acks but
never acks, so after it exits both messages must be back in the queue.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main, parse_bytes_repr  # noqa: E402

RECEIVED = r"^ \[x\] Received (b'.*'|b\".*\")$"


def scenario(ctx):
    q = ctx.name('hello')
    ctx.cleanup_queues.append(q)
    env = {'QUEUE': q}

    send = ctx.run('hello_world/send.py', env=env)
    send.wait_line(r"^ \[x\] Sent 'Hello World!'$", timeout=1)
    ctx.wait_counts(q, messages=1, consumers=0, what='after the first send')

    recv = ctx.start('hello_world/receive.py', env=dict(env, STOP_AFTER=2, TIME_LIMIT=30))
    recv.wait_line(r'^ \[\*\] Waiting for messages\. To exit press CTRL\+C$')
    recv.wait_line(RECEIVED, what='the message queued before the consumer started was not delivered')

    ctx.run('hello_world/send.py', env=env)
    matches = recv.wait_line(RECEIVED, count=2, what='the message sent while consuming was not delivered')
    recv.wait_exit(15)
    bodies = [parse_bytes_repr(m.group(1)) for m in matches]
    check(bodies == [b'Hello World!', b'Hello World!'], 'received bodies %r' % bodies)
    check(len(recv.matches(RECEIVED)) == 2, 'consumer got more than 2 messages:\n' + recv.transcript())

    # never acked -> requeued when the consumer's connection closed
    ctx.wait_counts(q, messages=2, consumers=0,
                    what='unacked messages must return to the queue when the consumer exits')


if __name__ == '__main__':
    main(scenario)
