"""Scenario 7: topic routing (模糊匹配 topic).

Q1 binds "*.orange.*"; Q2 binds "*.*.rabbit" and "lazy.#" (the tutorial's
consumers); Q3 binds "old.*" and Q4 "old.#" (the tutorial's table: sender key
old.boy.python does not match old.* but matches old.#).  Each queue must get
exactly the matching messages, each once, in publish order.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import check, main, parse_bytes_repr  # noqa: E402

MESSAGE = r"^ \[x\] '([^']*)':(b'.*'|b\".*\")$"
READY = r'^ \[\*\] Waiting for logs\. To exit press CTRL\+C$'

# routing key -> the queues that must get it (exactly once)
CASES = [
    ('quick.orange.rabbit', {'Q1', 'Q2'}),
    ('lazy.orange.elephant', {'Q1', 'Q2'}),
    ('quick.orange.fox', {'Q1'}),
    ('lazy.brown.fox', {'Q2'}),
    ('lazy.pink.rabbit', {'Q2'}),          # matches both of Q2's bindings: still once
    ('quick.brown.fox', set()),
    ('orange', set()),
    ('quick.orange.male.rabbit', set()),
    ('lazy.orange.male.rabbit', {'Q2'}),
    ('lazy', {'Q2'}),                      # '#' matches zero words
    ('lazy.mxt', {'Q2'}),                  # the tutorial producer's key
    ('.orange.', {'Q1'}),                  # '*' matches an empty word
    ('old.boy.python', {'Q4'}),            # old.* -- 不匹配, old.# -- 匹配
    ('old.boy', {'Q3', 'Q4'}),
    ('old', {'Q4'}),
    ('older.boy', set()),
    ('x.old.boy', set()),
]
BINDINGS = {'Q1': ['*.orange.*'], 'Q2': ['*.*.rabbit', 'lazy.#'], 'Q3': ['old.*'], 'Q4': ['old.#']}
# final messages that stop the consumers: lazy.orange.end reaches Q1 and Q2,
# old.end reaches Q3 and Q4 (and neither reaches the other pair).
ENDS = [('lazy.orange.end', {'Q1', 'Q2'}), ('old.end', {'Q3', 'Q4'})]


def received(p):
    return [(m.group(1), parse_bytes_repr(m.group(2)).decode()) for m in p.matches(MESSAGE)]


def scenario(ctx):
    x = ctx.name('topic_logs')
    ctx.cleanup_exchanges.append(x)
    env = {'EXCHANGE': x}

    consumers = {}
    for qname, keys in BINDINGS.items():
        args = [] if qname == 'Q1' else keys   # Q1 uses the program's default, the tutorial's "*.orange.*"
        consumers[qname] = ctx.start('topic/receive_logs_topic.py', args=args, env=dict(env, TIME_LIMIT=30),
                                     name='%s %s' % (qname, ' '.join(keys)))
    for c in consumers.values():
        c.wait_line(READY)

    sent = [(key, 'lalalala %s' % key) for key, _ in CASES] + [(key, 'END') for key, _ in ENDS]
    ctx.run('topic/emit_log_topic.py', args=['%s=%s' % kv for kv in sent], env=env)

    failures = []
    for qname, c in consumers.items():
        c.wait_line(r":b'END'$", what='END was not delivered')
        c.wait_exit(15)
        expected = [(key, body) for (key, body), (_, qs) in zip(sent, CASES + ENDS) if qname in qs]
        got = received(c)
        if got != expected:
            missing = [k for k, _ in expected if (k, _) not in got]
            extra = [k for k, _ in got if (k, _) not in expected]
            failures.append('%s: got %r\n    missing %r, unexpected %r'
                            % (c.name, [k for k, _ in got], missing, extra))
    check(not failures, 'wrong topic routing:\n  ' + '\n  '.join(failures))


if __name__ == '__main__':
    main(scenario)
