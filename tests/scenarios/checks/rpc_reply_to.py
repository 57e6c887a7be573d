"""Scenario: RPC with direct reply-to (pika 1.x only).

The tutorial's fib RPC without callback queues: two concurrent clients consume the
amq.rabbitmq.reply-to pseudo-queue with auto_ack and publish requests with
reply_to='amq.rabbitmq.reply-to'. The server (which just answers to props.reply_to) must see
reply_to rewritten to amq.rabbitmq.reply-to.<token>, one name per client; every answer must
reach the client that asked, with its correlation_id; no queue is left behind.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main  # noqa: E402

FIB = {0: 0, 1: 1, 5: 5, 7: 13, 10: 55, 12: 144, 15: 610, 20: 6765}
PREFIX = 'amq.rabbitmq.reply-to.'


def scenario(ctx):
    q = ctx.name('rpc_queue')
    ctx.cleanup_queues.append(q)
    env = {'RPC_QUEUE': q}
    calls = {'client 1': [10, 20, 0, 1, 15], 'client 2': [20, 10, 5, 7, 12]}
    total = sum(len(v) for v in calls.values())

    server = ctx.start('rpc_reply_to/rpc_server.py', env=dict(env, STOP_AFTER=total, TIME_LIMIT=40),
                       name='rpc server')
    server.wait_line(r'^ \[x\] Awaiting RPC requests$')
    clients = {name: ctx.start('rpc_reply_to/rpc_client.py', args=ns, env=dict(env, RPC_TIMEOUT=15),
                               name=name)
               for name, ns in calls.items()}
    for name, c in clients.items():
        c.wait_exit(40)
        asked = [int(m.group(1)) for m in c.matches(r'^ \[x\] Requesting fib\((\d+)\)$')]
        got = [int(m.group(1)) for m in c.matches(r'^ \[\.\] Got (-?\d+)$')]
        check(asked == calls[name], '%s asked %r, expected %r\n%s' % (name, asked, calls[name], c.transcript()))
        check(got == [FIB[n] for n in asked], '%s got %r for fib%r' % (name, got, asked))
        check(not c.matches(r'Ignoring response'),
              '%s received a response with a foreign correlation_id:\n%s' % (name, c.transcript()))

    server.wait_exit(15)
    served = server.matches(r'^ \[\.\] fib\((\d+)\) for (\S+)$')
    check(sorted(int(m.group(1)) for m in served) == sorted(calls['client 1'] + calls['client 2']),
          'server served %r' % [m.group(0) for m in served])
    names = {m.group(2) for m in served}
    check(all(n.startswith(PREFIX) and len(n) > len(PREFIX) for n in names),
          'reply_to not rewritten to %s<token>: %r' % (PREFIX, names))
    check(len(names) == 2, 'expected one reply-to name per client, got %r' % names)
    ctx.wait_counts(q, messages=0, consumers=0, what='after all calls')


if __name__ == '__main__':
    main(scenario)
