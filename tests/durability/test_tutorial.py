"""The founding tutorial's durable producer and consumer (durable:消息不丟失) across restarts."""
import os

from durlib import as_failure, check, harness, queue_count, time_limit

RECEIVED = r"^ \[x\] Received (b'.*'|b\".*\")$"
MODE = r'^ \[x\] delivery_mode=(.*)$'
READY = r'^ \[\*\] Waiting for messages\. To exit press CTRL\+C$'


def scenario(t, flavour, name):
    return os.path.join(t.repo, 'tests', 'scenarios', flavour, 'durable', name)


def run_program(t, b, flavour, path, args=(), env=None, timeout=20):
    e = b.env()
    e.update({k: str(v) for k, v in (env or {}).items()})
    p = t.program(flavour, path, args, e, name='%s %s' % (flavour, os.path.basename(path)))
    try:
        p.wait_exit(timeout)
    except harness.ScenarioFailure as exc:
        raise as_failure(exc)
    return p


def consume(t, b, flavour, count):
    """Run the tutorial's receive.py until it has acked `count` messages; the bodies."""
    p = run_program(t, b, flavour, scenario(t, flavour, 'receive.py'),
                    env={'STOP_AFTER': count, 'WORK_SECONDS': 0, 'TIME_LIMIT': 20}, timeout=30)
    bodies = [harness.parse_bytes_repr(m.group(1)) for m in p.matches(RECEIVED)]
    modes = [m.group(1) for m in p.matches(MODE)]
    check(p.matches(READY), '%s receive.py never said it was waiting\n%s' % (flavour, p.transcript()))
    check(all(m in ('2', '<DeliveryMode.Persistent: 2>') for m in modes),
          '%s receive.py: delivery_mode should be 2 after the restart, got %r' % (flavour, modes))
    check(len(p.matches(r'^ok$')) == count, '%s receive.py acked %d messages, expected %d\n%s'
          % (flavour, len(p.matches(r'^ok$')), count, p.transcript()))
    return bodies


@time_limit(60)
def test_tutorial_durable_programs_across_restart(t):
    """The tutorial's durable producer - queue_declare(queue='hello', durable=True) and
    delivery_mode=2, as tests/scenarios/{pika1,pika013}/durable/send.py and a
    tutorial-style producer taking the body from its command line - publishes to 'hello';
    the broker is stopped (SIGTERM) and started again; the tutorial's consumer
    (durable/receive.py, pika 0.13 then pika 1.x, manual acks) then gets every body, in
    order, with delivery_mode=2. The messages the 0.13 consumer acked stay acked over
    another clean restart and the rest keep their order; after a final crash (SIGKILL)
    the queue 'hello' still exists and is empty."""
    b = t.broker().start()
    sent = []
    for flavour in ('pika1', 'pika013'):
        p = run_program(t, b, flavour, scenario(t, flavour, 'send.py'))
        check(p.matches(r"^ \[x\] Sent 'Hello World!'$"), '%s send.py did not send\n%s'
              % (flavour, p.transcript()))
        sent.append(b'Hello World!')
    producer = os.path.join(t.here, 'programs', 'send_durable.py')
    for i in range(1, 4):
        body = 'durable task %d %s' % (i, '.' * i)
        run_program(t, b, 'pika1', producer, args=body.split(' '))
        sent.append(body.encode())
    check(queue_count(b, 'hello') == len(sent), "'hello' holds %s messages before the restart, "
          'expected %d' % (queue_count(b, 'hello'), len(sent)))

    b.restart()
    check(queue_count(b, 'hello') == len(sent), "'hello' holds %s messages after the restart, "
          'expected %d' % (queue_count(b, 'hello'), len(sent)))
    first = consume(t, b, 'pika013', 2)
    check(first == sent[:2], 'pika013 receive.py got %r, expected %r' % (first, sent[:2]))

    b.restart()
    rest = consume(t, b, 'pika1', len(sent) - 2)
    check(rest == sent[2:], 'pika1 receive.py got %r after the second restart, expected %r'
          % (rest, sent[2:]))
    check(queue_count(b, 'hello') == 0, "'hello' not empty after the consumers")

    b.restart(clean=False)
    check(queue_count(b, 'hello') == 0, "'hello' missing or not empty after a crash: %s"
          % queue_count(b, 'hello'))
    t.report('bodies across restarts: %r' % [x.decode() for x in sent])
    b.term()
