"""Publisher flow control and the store: a publisher paused by flow (not read while a queue it
feeds is over its memory mark) loses no confirmed message when the broker is killed."""
import base64
import http.client
import json
import os
import random
import time

from durlib import as_failure, brokerlib, check, drain, harness, queue_count, time_limit

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'programs')
# 60 KB bodies: the pacing queue passes coney's 16 MiB flow mark after about 280 of them.
SIZE = 60000
ROUNDS = 2


def connection_states(port):
    """The state of every AMQP connection, from the management API's /api/connections."""
    conn = http.client.HTTPConnection(brokerlib.HOST, port, timeout=10)
    token = base64.b64encode(b'guest:guest').decode()
    conn.request('GET', '/api/connections', headers={'Authorization': 'Basic ' + token})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    check(resp.status == 200, 'GET /api/connections: %s %r' % (resp.status, body[:200]))
    return [c['state'] for c in json.loads(body)]


def numbers(prog, tag):
    out = []
    for line in prog.lines():
        p = line.split()
        if p and p[0] == tag:
            out += [int(x) for x in p[1:]]
    return out


@time_limit(150)
def test_crash_while_a_publisher_is_flow_paused_loses_no_confirmed_message(t):
    """Two rounds on one data directory: a publisher with confirms sends numbered persistent
    60 KB messages, the even ones to durable queue 'kept', the odd ones to transient queue
    'pacer', whose consumer takes one message and never acks. 'pacer' passes its flow mark
    and the publisher's connection is paused (the management API lists it in state "flow");
    a random 0.2-1.5 s into the pauses (which last up to 1 s, then one read), SIGKILL. After
    the restart 'kept' holds every confirmed even message exactly once, in order,
    redelivered, and nothing that was never published; 'pacer', being transient, is gone."""
    rng = random.Random(t.seed + 11)
    http_port = brokerlib.free_port()
    b = t.broker()
    for r in range(1, ROUNDS + 1):
        b.args = ['--management-listen', '%s:%d' % (brokerlib.HOST, http_port)]
        b.start()
        holder = b.connect()
        hc = holder.channel()
        hc.queue_declare('kept', durable=True)
        hc.queue_declare('pacer', durable=False)
        hc.basic_qos(prefetch_count=1)
        hc.basic_consume('pacer', lambda c, m, p, body: None, auto_ack=False)
        env = b.env()
        env.update({'KEEP': 'kept', 'FLOW': 'pacer', 'KEEP_EVERY': '2', 'SIZE': str(SIZE),
                    'START': str(r * 10 ** 6), 'TIME_LIMIT': '40'})
        pub = t.program('pika1', os.path.join(PROGRAMS, 'split_publisher.py'), env=env,
                        name='split_publisher.py')
        try:
            pub.wait_line(r'^READY$', timeout=10)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        deadline = time.monotonic() + 30
        states = []
        while 'flow' not in states:
            check(time.monotonic() < deadline, 'round %d: no connection in state flow within '
                  '30 s (states %s)\n%s' % (r, states, pub.transcript()))
            check(pub.alive(), 'round %d: the publisher stopped\n%s' % (r, pub.transcript()))
            holder.process_data_events(time_limit=0.1)
            states = connection_states(http_port)
        time.sleep(rng.uniform(0.2, 1.5))
        paused = 'flow' in connection_states(http_port)
        b.kill()
        try:
            pub.wait_exit(30)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        published = max(numbers(pub, 'P') or [0])
        confirmed = set(numbers(pub, 'C'))
        nacked = numbers(pub, 'N')
        try:
            holder.close()
        except Exception:  # noqa: BLE001  (its broker is gone)
            pass
        b.args = []
        b.start()
        got = drain(b, 'kept', timeout=60)
        nums = [int(g.body.split(b'|', 1)[0]) for g in got]
        expect = {n for n in confirmed if n % 2 == 0}
        lost = sorted(expect - set(nums))
        dups = len(nums) - len(set(nums))
        unpublished = [n for n in nums if not r * 10 ** 6 <= n <= published]
        disorder = [(a, c) for a, c in zip(nums, nums[1:]) if c <= a]
        t.report('round %d: SIGKILL %s: published %d, confirmed %d (%d to kept), nacked %d; '
                 'kept: %d recovered'
                 % (r, 'while paused by flow' if paused else 'just after a pause',
                    published - r * 10 ** 6 + 1, len(confirmed), len(expect), len(nacked),
                    len(nums)))
        check(not lost, 'round %d: %d confirmed messages lost: %s' % (r, len(lost), lost[:10]))
        check(not dups, 'round %d: %d messages came back twice' % (r, dups))
        check(not unpublished, 'round %d: never published: %s' % (r, unpublished[:10]))
        check(not disorder, 'round %d: out of order, e.g. %s' % (r, disorder[:3]))
        check(all(g.redelivered for g in got), 'round %d: recovered without redelivered' % r)
        check(not nacked, 'round %d: %d messages nacked' % (r, len(nacked)))
        check(queue_count(b, 'pacer') is None, 'round %d: transient queue pacer survived' % r)
        b.term()
