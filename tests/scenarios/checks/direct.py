"""Scenario 6: direct routing (關鍵字發送 direct).

Consumer 1 binds info, error and warning (the tutorial's 消費者1); consumer 2
binds only error (消費者2).  Each must get exactly the messages whose routing
key it bound, in publish order; a key nobody bound is dropped.  A final
error=END message stops both consumers.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main, parse_bytes_repr  # noqa: E402

MESSAGE = r"^ \[x\] '([^']*)':(b'.*'|b\".*\")$"
READY = r'^ \[\*\] Waiting for logs\. To exit press CTRL\+C$'


def received(p):
    return [(m.group(1), parse_bytes_repr(m.group(2)).decode()) for m in p.matches(MESSAGE)]


def scenario(ctx):
    x = ctx.name('direct_logs')
    ctx.cleanup_exchanges.append(x)
    env = {'EXCHANGE': x}

    c1 = ctx.start('direct/receive_logs_direct.py', env=dict(env, TIME_LIMIT=30), name='consumer 1')  # default: info error warning
    c2 = ctx.start('direct/receive_logs_direct.py', args=['error'], env=dict(env, TIME_LIMIT=30), name='consumer 2')
    for c in (c1, c2):
        c.wait_line(READY)

    sent = [('info', 'hahaha'), ('error', 'disk full'), ('warning', 'disk almost full'),
            ('debug', 'nobody wants this'), ('error', 'out of memory'), ('info', 'all good'),
            ('Error', 'keys are case sensitive'), ('info.x', 'not a prefix match'),
            ('', 'empty key'), ('error', 'END')]
    ctx.run('direct/emit_log_direct.py', args=['%s=%s' % kv for kv in sent], env=env)

    for c, keys in ((c1, {'info', 'error', 'warning'}), (c2, {'error'})):
        c.wait_line(r":b'END'$", what='END was not delivered')
        c.wait_exit(15)
        expected = [kv for kv in sent if kv[0] in keys]
        got = received(c)
        check(got == expected, '%s (bound to %s) got the wrong messages:\n  got      %r\n  expected %r'
              % (c.name, sorted(keys), got, expected))


if __name__ == '__main__':
    main(scenario)
