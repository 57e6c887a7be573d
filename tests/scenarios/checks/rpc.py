"""Scenario 8: RPC with reply_to and correlation_id (基于rabbitMQ的RPC).

One fib server (prefetch_count=1) and two concurrent clients, each with its
own exclusive callback queue (amq.gen-...), each making several calls; every
answer must be fib(n) for the n that client asked.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main  # noqa: E402

FIB = {0: 0, 1: 1, 5: 5, 7: 13, 10: 55, 12: 144, 15: 610, 20: 6765}


def scenario(ctx):
    q = ctx.name('rpc_queue')
    ctx.cleanup_queues.append(q)
    env = {'RPC_QUEUE': q}
    calls = {'client 1': [10, 20, 0, 1, 15], 'client 2': [20, 10, 5, 7, 12]}
    total = sum(len(v) for v in calls.values())

    server = ctx.start('rpc/rpc_server.py', env=dict(env, STOP_AFTER=total, TIME_LIMIT=40), name='rpc server')
    server.wait_line(r'^ \[x\] Awaiting RPC requests$')

    clients = {name: ctx.start('rpc/rpc_client.py', args=ns, env=dict(env, RPC_TIMEOUT=15), name=name)
               for name, ns in calls.items()}
    for name, c in clients.items():
        c.wait_exit(40)
        cq = c.wait_line(r'^ \[\*\] Callback queue (.*)$', timeout=1).group(1)
        check(cq.startswith('amq.gen-'), '%s: callback queue should be server-named amq.gen-..., got %r'
              % (name, cq))
        asked = [int(m.group(1)) for m in c.matches(r'^ \[x\] Requesting fib\((\d+)\)$')]
        got = [int(m.group(1)) for m in c.matches(r'^ \[\.\] Got (-?\d+)$')]
        check(asked == calls[name], '%s asked %r, expected %r\n%s' % (name, asked, calls[name], c.transcript()))
        check(got == [FIB[n] for n in asked], '%s got %r for fib%r, expected %r'
              % (name, got, asked, [FIB[n] for n in asked]))
        check(not c.matches(r'Ignoring response'), '%s received a response with a foreign correlation_id:\n%s'
              % (name, c.transcript()))

    server.wait_exit(15)
    served = sorted(int(m.group(1)) for m in server.matches(r'^ \[\.\] fib\((\d+)\)$'))
    check(served == sorted(calls['client 1'] + calls['client 2']),
          'server served %r' % served)
    ctx.wait_counts(q, messages=0, consumers=0, what='after all calls')


if __name__ == '__main__':
    main(scenario)
