"""Shovel tests: coney's shovels against real RabbitMQ 3.10 nodes (the rabbitmq_shovel and
rabbitmq_shovel_management plugins enabled for the side-by-side checks), driven with pika on
both brokers and the management API over HTTP; coney's own codec is never a checker (the
shovel itself, coney's client, is what is tested). Starts its own brokers: coney (AMQP
5721, API 15721), RabbitMQ A (5731, API 15731) and B (5732, API 15732), or from another
base with --ports; prints `N passed, M failed` as its last line.

    .venv/pika1/bin/python tests/shovel/run.py --coney target/release/coney [--only NAME]
    .venv/pika1/bin/python tests/shovel/run.py --bench [--bench-messages 100000]
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'lib'))
import brokerlib  # noqa: E402
from brokerlib import HOST  # noqa: E402

import pika  # noqa: E402

CONEY_PORT, CONEY_API = 5721, 15721
A_PORT, B_PORT = 5731, 5732
PLUGINS = 'rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management'
WAIT = 60


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_for(what, fn, timeout=WAIT, every=0.05):
    """Polls `fn` until it returns a true value (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise Failure('timed out waiting for %s (last: %r)' % (what, last))


def api(port, method, path, body=None, user='guest', password='guest'):
    """(status, JSON or text) of one management API request."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request('http://%s:%d/api%s' % (HOST, port, path), data=data,
                                 method=method)
    req.add_header('authorization', 'Basic ' + base64.b64encode(
        ('%s:%s' % (user, password)).encode()).decode())
    if data is not None:
        req.add_header('content-type', 'application/json')
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors='replace')


def q(name):
    return urllib.parse.quote(name, safe='')


class Rabbit:
    """A private RabbitMQ node with the management and shovel plugins (scripts/rabbitmq.sh),
    restartable with its data."""

    def __init__(self, directory, port):
        self.dir, self.port, self.api_port, self.pid = directory, port, port + 10000, None

    def start(self, keep=False):
        env = dict(os.environ, RABBITMQ_PLUGINS=PLUGINS, RABBITMQ_KEEP_DATA='1' if keep else '0')
        cp = subprocess.run(['bash', os.path.join(brokerlib.REPO, 'scripts/rabbitmq.sh'), 'start',
                             str(self.port), self.dir], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=180)
        if cp.returncode != 0:
            raise brokerlib.BrokerError('rabbitmq.sh start %d: %s' % (
                self.port, cp.stderr.decode(errors='replace')[-1500:]))
        self.pid = int(cp.stdout.decode().split()[-1])
        return self

    def stop(self):
        subprocess.run(['bash', os.path.join(brokerlib.REPO, 'scripts/rabbitmq.sh'), 'stop',
                        self.dir], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        self.pid = None


class Env:
    pass


def conn(port):
    return pika.BlockingConnection(pika.ConnectionParameters(
        HOST, port, heartbeat=0, blocked_connection_timeout=60))


def count(port, queue):
    """Messages ready in `queue` (passive declare), or -1 if it cannot be asked now."""
    try:
        c = conn(port)
        try:
            return c.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            c.close()
    except Exception:  # noqa: BLE001 - a broker being restarted answers nothing
        return -1


def publish(port, queue, n, start=0, size=100, props=None, wait=True):
    """n persistent messages with bodies b'<id>:' + padding; returns once the queue holds
    them (when `wait`: nothing consumes it yet). Without publisher confirms: pika waits for
    each confirm, 20 times slower."""
    c = conn(port)
    ch = c.channel()
    before = ch.queue_declare(queue, durable=True).method.message_count
    pad = b'x' * size
    for i in range(start, start + n):
        p = props or pika.BasicProperties(delivery_mode=2, message_id=str(i))
        ch.basic_publish('', queue, b'%d:' % i + pad, p)
    c.close()
    if wait:
        wait_for('%d messages in %s' % (n, queue), lambda: count(port, queue) >= before + n,
                 timeout=120)


def drain(port, queue, expect, timeout=WAIT):
    """Every message of `queue` until `expect` arrived and it stays quiet for 2 s: list of
    (id, properties, redelivered)."""
    c = conn(port)
    ch = c.channel()
    ch.basic_qos(prefetch_count=1000)
    got = []
    last = [time.monotonic()]

    def on_message(_ch, m, props, body):
        last[0] = time.monotonic()
        got.append((int(body.split(b':', 1)[0]), props, m.redelivered))

    ch.basic_consume(queue, on_message, auto_ack=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.process_data_events(time_limit=0.2)
        if len(got) >= expect and time.monotonic() - last[0] > 2:
            break
    c.close()
    return got


def put_shovel(port, name, value, vhost='/'):
    return api(port, 'PUT', '/parameters/shovel/%s/%s' % (q(vhost), q(name)), {'value': value})


def del_shovel(port, name, vhost='/'):
    return api(port, 'DELETE', '/parameters/shovel/%s/%s' % (q(vhost), q(name)))


def shovel_state(port, name):
    _, rows = api(port, 'GET', '/shovels')
    for r in rows or []:
        if r.get('name') == name:
            return r
    return None


def wait_running(port, name):
    return wait_for('shovel %s running' % name,
                    lambda: (shovel_state(port, name) or {}).get('state') == 'running')


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


# ------------------------------------------------------------------ tests

def test_validation_matches_rabbitmq(t):
    """PUT of invalid shovel definitions gets RabbitMQ 3.10's status and reason text."""
    base = {'src-uri': 'amqp://', 'src-queue': 'a', 'dest-uri': 'amqp://'}
    cases = [
        {'src-uri': 'amqp://', 'dest-uri': 'amqp://'},
        dict(base, bogus=1),
        dict(base, **{'src-exchange': 'x'}),
        dict(base, **{'ack-mode': 'bad'}),
        dict(base, **{'src-delete-after': 'x'}),
        dict(base, **{'src-prefetch-count': 'x'}),
        dict(base, **{'dest-add-forward-headers': 'yes'}),
        dict(base, **{'dest-queue': 'b', 'dest-exchange': 'x'}),
        dict(base, **{'reconnect-delay': 'x'}),
        dict(base, **{'src-queue': 7}),
        dict(base, **{'src-uri': 'foo://x'}),
    ]
    for value in cases:
        want = put_shovel(t.a.api_port, 'v', value)
        got = put_shovel(CONEY_API, 'v', value)
        check(got == want, 'PUT %s: coney %r, RabbitMQ %r' % (value, got, want))
        check(want[0] == 400, 'RabbitMQ accepted %s' % value)
    for body in [b'nojson', b'{"src-uri":"amqp://"}']:
        want = api(t.a.api_port, 'PUT', '/parameters/shovel/%2F/v', body)
        got = api(CONEY_API, 'PUT', '/parameters/shovel/%2F/v', body)
        check(got == want, 'PUT %r: coney %r, RabbitMQ %r' % (body, got, want))
    want = api(t.a.api_port, 'PUT', '/parameters/shovel/nope/v', {'value': base})
    got = api(CONEY_API, 'PUT', '/parameters/shovel/nope/v', {'value': base})
    check(got == want, 'unknown vhost: coney %r, RabbitMQ %r' % (got, want))


def test_parameter_api_matches_rabbitmq(t):
    """GET, list and DELETE of shovel parameters answer as RabbitMQ's (201, 204, 404)."""
    value = {'src-uri': 'amqp://', 'src-queue': 'pa', 'dest-uri': 'amqp://', 'dest-queue': 'pb'}
    for port in (t.a.api_port, CONEY_API):
        check(put_shovel(port, 'p1', value)[0] == 201, 'create on %d' % port)
        check(put_shovel(port, 'p1', value)[0] == 204, 'update on %d' % port)
    for path in ['/parameters/shovel/%2F/p1', '/parameters/shovel/%2F/nosuch',
                 '/parameters/shovel', '/parameters/shovel/%2F', '/parameters/shovel/nope',
                 '/parameters']:
        want = api(t.a.api_port, 'GET', path)
        got = api(CONEY_API, 'GET', path)
        check(got == want, 'GET %s: coney %r, RabbitMQ %r' % (path, got, want))
    for path in ['/parameters/shovel/%2F/p1', '/parameters/shovel/%2F/p1']:
        want = api(t.a.api_port, 'DELETE', path)
        got = api(CONEY_API, 'DELETE', path)
        check(got == want, 'DELETE %s: coney %r, RabbitMQ %r' % (path, got, want))


def forward_case(port_src_api, name, src_port, dest_uri, n):
    """Publishes n messages with properties to queue NAME-src on src_port, shovels them with
    a shovel on the broker of port_src_api to queue NAME-dst behind dest_uri."""
    props = pika.BasicProperties(delivery_mode=2, headers={'h': 'v', 'n': 7},
                                 message_id='m', content_type='text/plain', priority=3,
                                 correlation_id='c', expiration='600000', app_id='app')
    publish(src_port, name + '-src', n, props=props)
    value = {'src-uri': 'amqp://', 'src-queue': name + '-src', 'dest-uri': dest_uri,
             'dest-queue': name + '-dst', 'dest-add-forward-headers': True}
    check(put_shovel(port_src_api, name, value)[0] == 201, 'create %s' % name)


def test_listings_follow_vhost_access(t):
    """A policymaker without permissions in a vhost sees none of its shovels, in the status
    and parameter listings, and is refused the parameter itself, as on RabbitMQ."""
    value = {'src-uri': 'amqp://', 'src-queue': 'hq', 'dest-uri': 'amqp://', 'dest-queue': 'hq2'}
    answers = []
    for port in (t.a.api_port, CONEY_API):
        check(api(port, 'PUT', '/vhosts/sv', {})[0] in (201, 204), 'vhost on %d' % port)
        api(port, 'PUT', '/permissions/sv/guest', {'configure': '.*', 'write': '.*', 'read': '.*'})
        api(port, 'PUT', '/users/pm', {'password': 'pm', 'tags': 'policymaker'})
        api(port, 'PUT', '/permissions/%2F/pm', {'configure': '.*', 'write': '.*', 'read': '.*'})
        check(put_shovel(port, 'hidden', value, vhost='sv')[0] == 201, 'create on %d' % port)
        wait_running(port, 'hidden')
        seen = []
        for path in ['/shovels', '/parameters/shovel', '/parameters/shovel/sv/hidden']:
            status, body = api(port, 'GET', path, user='pm', password='pm')
            names = [r['name'] for r in body] if isinstance(body, list) else body
            seen.append((status, names))
        answers.append(seen)
        check(del_shovel(port, 'hidden', vhost='sv')[0] == 204, 'delete on %d' % port)
        api(port, 'DELETE', '/vhosts/sv')
        api(port, 'DELETE', '/users/pm')
    check(answers[0] == answers[1], 'coney %r, RabbitMQ %r' % (answers[1], answers[0]))
    check(all('hidden' not in json.dumps(a) for a in answers[1][:2]), 'seen: %r' % (answers[1],))


def consumer_connection(port, queue):
    """The connection name of the (first) consumer of `queue` in vhost /, or None."""
    _, rows = api(port, 'GET', '/consumers/%2F')
    for r in rows if isinstance(rows, list) else []:
        if r['queue']['name'] == queue:
            return r['channel_details']['connection_name']
    return None


def test_restart_and_delete_as_rabbitmq(t):
    """/api/shovels/vhost/V/NAME and .../restart answer as RabbitMQ 3.10's shovel_management
    (GET lists the vhost's shovels; 404 for an unknown shovel or one in a vhost the user has
    no permissions in, administrators included; 401 for a user without the monitoring tag);
    a restart stops the shovel and starts it again on new connections (its source consumer
    is another connection) and it moves messages after it; DELETE deletes the shovel's
    parameter."""
    value = {'src-uri': 'amqp://', 'src-queue': 'rs-src', 'dest-uri': 'amqp://',
             'dest-queue': 'rs-dst'}
    answers = []
    for port, amqp in ((t.a.api_port, A_PORT), (CONEY_API, CONEY_PORT)):
        api(port, 'PUT', '/users/rmg', {'password': 'p', 'tags': 'management'})
        api(port, 'PUT', '/users/radm', {'password': 'p', 'tags': 'administrator'})
        api(port, 'PUT', '/permissions/%2F/rmg', {'configure': '.*', 'write': '.*', 'read': '.*'})
        check(put_shovel(port, 'rs', value)[0] == 201, 'create on %d' % port)
        wait_running(port, 'rs')
        got = []

        def ask(method, path, user='guest'):
            status, body = api(port, method, path, user=user,
                               password='guest' if user == 'guest' else 'p')
            names = sorted(r['name'] for r in body) if isinstance(body, list) else body
            got.append((method, path, user, status, names))
            return status

        ask('GET', '/shovels/vhost/%2F/rs')
        ask('GET', '/shovels/vhost/%2F/rs/restart')
        ask('GET', '/shovels/vhost/%2F/nope')
        ask('DELETE', '/shovels/vhost/%2F/nope/restart')
        ask('DELETE', '/shovels/vhost/nov/rs/restart')
        ask('DELETE', '/shovels/vhost/%2F/rs/restart', user='rmg')
        ask('GET', '/shovels', user='radm')
        ask('GET', '/shovels/%2F', user='radm')
        ask('DELETE', '/shovels/vhost/%2F/rs/restart', user='radm')
        before = wait_for('consumer on rs-src', lambda: consumer_connection(port, 'rs-src'))
        check(ask('DELETE', '/shovels/vhost/%2F/rs/restart') == 204, 'restart on %d' % port)
        after = wait_for('a new consumer on rs-src', lambda: (lambda c: c if c and c != before
                                                              else None)(consumer_connection(port, 'rs-src')))
        wait_running(port, 'rs')
        publish(amqp, 'rs-src', 5, wait=False)
        check(len(drain(amqp, 'rs-dst', 5)) == 5, 'moved after the restart on %d' % port)
        print('    %d: source consumer %s -> %s' % (port, before, after))
        ask('DELETE', '/shovels/vhost/%2F/rs')
        ask('GET', '/parameters/shovel/%2F/rs')
        ask('DELETE', '/shovels/vhost/%2F/rs')
        answers.append(got)
        for u in ('rmg', 'radm'):
            api(port, 'DELETE', '/users/' + u)
    for want, got in zip(answers[0], answers[1]):
        check(got == want, 'coney %r, RabbitMQ %r' % (got, want))


def test_coney_to_rabbitmq_as_rabbitmqs_shovel(t):
    """coney → RabbitMQ moves every message in order with its properties, and adds the same
    x-shovelled header as RabbitMQ's own shovel doing RabbitMQ A → RabbitMQ B."""
    n = 200
    b_uri = 'amqp://guest:guest@%s:%d' % (HOST, B_PORT)
    forward_case(t.a.api_port, 'fr', A_PORT, b_uri, n)
    forward_case(CONEY_API, 'fc', CONEY_PORT, b_uri, n)
    want = drain(B_PORT, 'fr-dst', n)
    got = drain(B_PORT, 'fc-dst', n)
    check([i for i, _, _ in got] == list(range(n)), 'coney order/count: %r' % [i for i, _, _ in got][:20])
    check(len(want) == n, 'RabbitMQ moved %d' % len(want))
    wp, gp = want[0][1], got[0][1]
    for attr in ['delivery_mode', 'message_id', 'content_type', 'priority', 'correlation_id',
                 'expiration', 'app_id']:
        check(getattr(wp, attr) == getattr(gp, attr), '%s: %r vs %r' % (attr, getattr(gp, attr), getattr(wp, attr)))
    wh, gh = dict(wp.headers), dict(gp.headers)
    ws, gs = wh.pop('x-shovelled'), gh.pop('x-shovelled')
    check(wh == gh, 'headers %r vs %r' % (gh, wh))
    # RabbitMQ's keys in its order, then coney's `redelivered` (the source delivery's flag,
    # which marks every copy that may be a duplicate).
    check(len(ws) == len(gs) == 1 and list(ws[0]) + ['redelivered'] == list(gs[0]),
          'x-shovelled keys %r vs %r' % (gs, ws))
    check(all(shovelled_redelivered(p) is False for _, p, _ in got), 'redelivered on a first copy')
    check(gs[0]['shovel-type'] == 'dynamic' and gs[0]['shovel-name'] == 'fc'
          and gs[0]['dest-uri'] == 'amqp://%s:%d' % (HOST, B_PORT), 'x-shovelled %r' % gs)
    check(count(CONEY_PORT, 'fc-src') == 0, 'source not emptied (acked)')
    for port, name in [(t.a.api_port, 'fr'), (CONEY_API, 'fc')]:
        check(del_shovel(port, name)[0] == 204, 'delete')


def test_rabbitmq_to_coney_exchange_source(t):
    """RabbitMQ → coney with src-exchange and key: only matching messages move, to the
    destination exchange with their routing key; the status shows it running."""
    value = {'src-uri': 'amqp://guest:guest@%s:%d/%%2F' % (HOST, B_PORT),
             'src-exchange': 'amq.topic', 'src-exchange-key': 'a.#',
             'dest-uri': 'amqp://', 'dest-exchange': 'amq.direct', 'ack-mode': 'on-publish'}
    c = conn(CONEY_PORT)
    ch = c.channel()
    ch.queue_declare('rx', durable=True)
    ch.queue_bind('rx', 'amq.direct', 'a.1')
    ch.queue_bind('rx', 'amq.direct', 'b.1')
    c.close()
    check(put_shovel(CONEY_API, 'rx', value)[0] == 201, 'create')
    wait_running(CONEY_API, 'rx')
    row = shovel_state(CONEY_API, 'rx')
    check(row['src_uri'] == 'amqp://%s:%d/%%2F' % (HOST, B_PORT), 'password hidden: %r' % row)
    c = conn(B_PORT)
    ch = c.channel()
    for i in range(50):
        ch.basic_publish('amq.topic', 'a.1' if i % 2 == 0 else 'b.1', b'%d:' % i)
    c.close()
    got = drain(CONEY_PORT, 'rx', 25)
    check(sorted(i for i, _, _ in got) == list(range(0, 50, 2)), 'moved %r' % [i for i, _, _ in got])
    check(del_shovel(CONEY_API, 'rx')[0] == 204, 'delete')


def test_status_listing_matches_rabbitmq(t):
    """/api/shovels rows have RabbitMQ's fields when running, and a reason when the remote
    is unreachable (terminated)."""
    good = {'src-uri': 'amqp://', 'src-queue': 'st', 'dest-uri': 'amqp://', 'dest-queue': 'st2'}
    for port in (t.a.api_port, CONEY_API):
        put_shovel(port, 'st', good)
        wait_running(port, 'st')
    want, got = shovel_state(t.a.api_port, 'st'), shovel_state(CONEY_API, 'st')
    check(sorted(want) == sorted(got), 'fields %r vs %r' % (sorted(got), sorted(want)))
    for k in ['name', 'vhost', 'type', 'state', 'src_uri', 'dest_uri', 'src_queue',
              'dest_queue', 'src_protocol', 'dest_protocol']:
        check(want[k] == got[k], '%s: %r vs %r' % (k, got[k], want[k]))
    bad = dict(good, **{'dest-uri': 'amqp://u:secret@%s:1' % HOST})
    put_shovel(CONEY_API, 'st-bad', bad)
    row = wait_for('terminated', lambda: (lambda r: r if r and r['state'] == 'terminated' else None)(shovel_state(CONEY_API, 'st-bad')))
    check('reason' in row and 'secret' not in json.dumps(row), 'row %r' % row)
    for port in (t.a.api_port, CONEY_API):
        del_shovel(port, 'st')
    del_shovel(CONEY_API, 'st-bad')
    check(shovel_state(CONEY_API, 'st-bad') is None, 'deleted shovel still listed')


def test_delete_after_as_rabbitmq(t):
    """src-delete-after N moves exactly N messages and the shovel deletes itself, on both."""
    for port, api_port, name in [(A_PORT, t.a.api_port, 'da-r'), (CONEY_PORT, CONEY_API, 'da-c')]:
        publish(port, name, 20)
        value = {'src-uri': 'amqp://', 'src-queue': name, 'dest-uri': 'amqp://',
                 'dest-queue': name + '-dst', 'src-delete-after': 5}
        check(put_shovel(api_port, name, value)[0] == 201, 'create')
        wait_for('%s deleted itself' % name,
                 lambda: api(api_port, 'GET', '/parameters/shovel/%%2F/%s' % name)[0] == 404)
        wait_for('%s settled' % name, lambda: count(port, name) == 15 and count(port, name + '-dst') == 5)


def test_parameters_survive_restart_and_export(t):
    """A shovel parameter is in the definitions export, survives a restart (and kill -9), and
    runs again after it."""
    value = {'src-uri': 'amqp://', 'src-queue': 'ps', 'dest-uri': 'amqp://', 'dest-queue': 'ps2'}
    put_shovel(CONEY_API, 'ps', value)
    _, defs = api(CONEY_API, 'GET', '/definitions')
    check({'vhost': '/', 'component': 'shovel', 'name': 'ps', 'value': value} in defs['parameters'],
          'export %r' % defs['parameters'])
    t.coney.kill()
    t.coney.start()
    wait_running(CONEY_API, 'ps')
    publish(CONEY_PORT, 'ps', 10, wait=False)
    check(len(drain(CONEY_PORT, 'ps2', 10)) == 10, 'moved after restart')
    del_shovel(CONEY_API, 'ps')
    defs['parameters'] = [dict(p, name='imported') for p in defs['parameters'] if p['name'] == 'ps']
    check(api(CONEY_API, 'POST', '/definitions', defs)[0] in (200, 201, 204), 'import')
    wait_running(CONEY_API, 'imported')
    del_shovel(CONEY_API, 'imported')


def test_static_shovel_from_config(t):
    """shovel.NAME.KEY lines start a static shovel; an unknown key stops the start (78)."""
    d = os.path.join(t.tmp, 'static')
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'coney.conf')
    with open(conf, 'w') as f:
        f.write('management.tcp.port = %d\nprometheus.enabled = false\n' % (CONEY_API + 1) +
                'shovel.s1.src-uri = amqp://\nshovel.s1.src-queue = sq\n'
                'shovel.s1.dest-uri = amqp://guest:guest@127.0.0.1:%d\n'
                'shovel.s1.dest-queue = sq2\nshovel.s1.src-prefetch-count = 10\n' % B_PORT)
    c = brokerlib.Coney(t.binary, os.path.join(d, 'data'), os.path.join(d, 'log'), port=CONEY_PORT + 1,
                        args=['--config', conf])
    try:
        c.start()
        wait_running(CONEY_API + 1, 's1')
        row = shovel_state(CONEY_API + 1, 's1')
        check(row['type'] == 'static', 'row %r' % row)
        publish(CONEY_PORT + 1, 'sq', 5, wait=False)
        check(len(drain(B_PORT, 'sq2', 5)) == 5, 'static shovel moved')
    finally:
        c.close()
    with open(conf, 'a') as f:
        f.write('shovel.s1.src-queue-typo = x\n')
    cp = subprocess.run([t.binary, '--check-config', conf], capture_output=True, timeout=30)
    check(cp.returncode == 78 and b'src-queue-typo' in cp.stdout + cp.stderr,
          'bad key: rc %d %r' % (cp.returncode, cp.stdout + cp.stderr))


def test_reconnects_without_busy_loop(t):
    """When the remote goes away the shovel is terminated with a reason, coney stays idle
    (no busy loop) while it retries every reconnect-delay, and runs again when the remote
    is back."""
    value = {'src-uri': 'amqp://', 'src-queue': 'rc', 'dest-uri':
             'amqp://guest:guest@%s:%d' % (HOST, B_PORT), 'dest-queue': 'rc2'}
    put_shovel(CONEY_API, 'rc', value)
    wait_running(CONEY_API, 'rc')
    t.b.stop()
    try:
        wait_for('terminated', lambda: (shovel_state(CONEY_API, 'rc') or {}).get('state') == 'terminated')
        before = cpu_seconds(t.coney.proc.pid)
        time.sleep(3)
        used = cpu_seconds(t.coney.proc.pid) - before
        check(used < 0.3, 'coney used %.2f s of CPU in 3 s while retrying' % used)
    finally:
        t.b.start(keep=True)
    wait_running(CONEY_API, 'rc')
    publish(CONEY_PORT, 'rc', 3, wait=False)
    check(len(drain(B_PORT, 'rc2', 3)) == 3, 'moved after the remote came back')
    del_shovel(CONEY_API, 'rc')


def shovelled_redelivered(props):
    """The `redelivered` key of the newest x-shovelled entry (None without one)."""
    trace = (props.headers or {}).get('x-shovelled') or [{}]
    return trace[0].get('redelivered')


def chaos(t, label, src_port, src_api, dest_port, value, src_q, dst_q, n, interrupt):
    """Moves n persistent messages with `value` (dest-add-forward-headers on), runs
    interruption i when the destination holds (i+1)/(len+1) of them, then counts what
    arrived: none lost; every duplicate flagged (one of its copies says redelivered in its
    x-shovelled entry); duplicates bounded.

    `interrupt` is a list of (action, resurrects): `resurrects` marks a kill -9 of a RabbitMQ
    source, which may deliver again what it had been acked for but not yet written (its
    queue index journal), so the bound there is what had moved before it, not a prefetch."""
    value = dict(value, **{'dest-add-forward-headers': True})
    publish(src_port, src_q, n)
    check(put_shovel(CONEY_API, label, value)[0] == 201, 'create')
    bound = 0
    for i, (action, resurrects) in enumerate(interrupt):
        mark = n * (i + 1) // (len(interrupt) + 1)
        wait_for('%s: %d at the destination' % (label, mark),
                 lambda: count(dest_port, dst_q) >= mark, timeout=120, every=0.02)
        at = count(dest_port, dst_q)
        action()
        # What was in flight (prefetch 1000) at each interruption, plus acks a crashed coney
        # had sent but not yet written (one loop turn's); see the docstring for `resurrects`.
        bound += at if resurrects else 2000
        print('    %s: interruption %d at %d of %d moved' % (label, i + 1, at, n))
    wait_for('%s: source drained' % label, lambda: count(src_port, src_q) == 0, timeout=120)
    got = drain(dest_port, dst_q, n, timeout=120)
    ids = [i for i, _, _ in got]
    missing = set(range(n)) - set(ids)
    dups = len(ids) - len(set(ids))
    seen, flagged = {}, set()
    for i, props, _ in got:
        seen[i] = seen.get(i, 0) + 1
        if shovelled_redelivered(props):
            flagged.add(i)
    unflagged = sorted(i for i, c in seen.items() if c > 1 and i not in flagged)
    print('    %s: %d sent, %d received, %d lost, %d duplicates (%d copies flagged, %d duplicated '
          'ids without a flagged copy)' % (label, n, len(ids), len(missing), dups, len(flagged),
                                           len(unflagged)))
    check(not missing, '%s: %d lost, e.g. %r' % (label, len(missing), sorted(missing)[:10]))
    check(not unflagged, '%s: duplicates without a flagged copy, e.g. %r' % (label, unflagged[:10]))
    check(dups <= bound, '%s: %d duplicates, bound %d' % (label, dups, bound))
    del_shovel(CONEY_API, label)
    return len(ids), dups


def kill_and_restart_coney(t):
    def act():
        t.coney.kill()
        t.coney.start()
    return act


def restart_rabbit(t, node):
    def act():
        node.stop()
        node.start(keep=True)
    return act


def process_gone(pid):
    """True once `pid` has exited (gone, or a zombie its parent has not reaped)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError:
        return True


def kill_rabbit(t, node):
    """kill -9 of the node's Erlang VM (no shutdown: what it confirmed must be on its disk),
    then a start on the same data."""
    def act():
        os.kill(node.pid, signal.SIGKILL)
        wait_for('beam.smp %d gone' % node.pid, lambda: process_gone(node.pid))
        node.stop()  # epmd and the pid files of the killed node
        node.start(keep=True)
    return act


def test_chaos_coney_to_rabbitmq(t):
    """coney → RabbitMQ, on-confirm, 50,000 persistent messages: kill -9 of coney, a restart
    of the RabbitMQ node, and a kill -9 of the RabbitMQ node, in the middle; nothing is
    lost."""
    n = t.chaos_n
    value = {'src-uri': 'amqp://', 'src-queue': 'ch1', 'dest-uri':
             'amqp://guest:guest@%s:%d' % (HOST, B_PORT), 'dest-queue': 'ch1-dst'}
    chaos(t, 'ch1', CONEY_PORT, CONEY_API, B_PORT, value, 'ch1', 'ch1-dst', n,
          [(kill_and_restart_coney(t), False), (restart_rabbit(t, t.b), False),
           (kill_rabbit(t, t.b), False)])


def test_chaos_rabbitmq_to_coney(t):
    """RabbitMQ → coney, on-confirm, 50,000 persistent messages: kill -9 of coney, a restart
    of the RabbitMQ node, and a kill -9 of the RabbitMQ node, in the middle; nothing is
    lost."""
    n = t.chaos_n
    value = {'src-uri': 'amqp://guest:guest@%s:%d' % (HOST, B_PORT), 'src-queue': 'ch2',
             'dest-uri': 'amqp://', 'dest-queue': 'ch2-dst'}
    chaos(t, 'ch2', B_PORT, None, CONEY_PORT, value, 'ch2', 'ch2-dst', n,
          [(kill_and_restart_coney(t), False), (restart_rabbit(t, t.b), False),
           (kill_rabbit(t, t.b), True)])


def test_canary_round_trip_while_shovelling(t):
    """While a shovel moves 100,000 messages out of coney, another client's round trip on
    coney stays short (the shovel's work per loop turn is bounded)."""
    n = 100_000
    publish(CONEY_PORT, 'cn', n, size=16)
    c = conn(CONEY_PORT)
    ch = c.channel()
    value = {'src-uri': 'amqp://', 'src-queue': 'cn', 'dest-uri':
             'amqp://guest:guest@%s:%d' % (HOST, B_PORT), 'dest-queue': 'cn2',
             'ack-mode': 'on-publish'}
    put_shovel(CONEY_API, 'cn', value)
    rtts = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        ch.queue_declare('canary', passive=False)
        rtts.append(time.perf_counter() - t0)
        if len(rtts) % 50 == 0 and count(B_PORT, 'cn2') >= n:
            break
    c.close()
    rtts.sort()
    p99 = rtts[int(len(rtts) * 0.99)] * 1000
    print('    canary: %d round trips while shovelling, p99 %.2f ms' % (len(rtts), p99))
    check(p99 < 50, 'canary p99 %.1f ms' % p99)
    del_shovel(CONEY_API, 'cn')


# ------------------------------------------------------------------ host names

class FakeDns:
    """A DNS server on 127.0.0.1 (UDP, answers written byte by byte here, not coney's codec)
    that knows `names` (name -> IPv4), answers NXDOMAIN for other names, and never answers
    names in `silent`; counts the questions it was asked."""

    def __init__(self, names, silent):
        self.names, self.silent, self.asked = names, silent, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                msg, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            labels, at = [], 12
            while msg[at]:
                labels.append(msg[at + 1:at + 1 + msg[at]].decode())
                at += 1 + msg[at]
            name, qtype = '.'.join(labels).lower(), struct.unpack('>H', msg[at + 1:at + 3])[0]
            self.asked.append((name, qtype))
            if name in self.silent:
                continue
            question = msg[12:at + 5]
            ip = self.names.get(name)
            if ip is None:
                head = msg[:2] + b'\x81\x83' + b'\x00\x01\x00\x00\x00\x00\x00\x00'
                self.sock.sendto(head + question, peer)
                continue
            answers = b''
            if qtype == 1:
                answers = b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04' + socket.inet_aton(ip)
            head = msg[:2] + b'\x81\x80' + struct.pack('>HHHH', 1, 1 if answers else 0, 0, 0)
            self.sock.sendto(head + question + answers, peer)

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_host_names_resolve_without_blocking(t):
    """A shovel's host name is resolved with resolv.conf's servers (here a fake DNS server
    named by CONEY_RESOLV_CONF, which the system resolver would not ask), and a DNS server
    that never answers leaves the shovel terminated with the reason after timeout x attempts
    while another client's round trip on coney stays short: the lookup does not block the
    loop (getaddrinfo would stall it for those seconds)."""
    value = {'src-uri': 'amqp://', 'src-queue': 'dn', 'dest-uri':
             'amqp://guest:guest@rabbit-b.coney-test:%d' % B_PORT, 'dest-queue': 'dn2'}
    check(put_shovel(CONEY_API, 'dn', value)[0] == 201, 'create')
    wait_running(CONEY_API, 'dn')
    publish(CONEY_PORT, 'dn', 3, wait=False)
    check(len(drain(B_PORT, 'dn2', 3)) == 3, 'moved to the node named in DNS')
    check(('rabbit-b.coney-test', 1) in t.dns.asked, 'asked %r' % t.dns.asked)
    del_shovel(CONEY_API, 'dn')

    c = conn(CONEY_PORT)
    ch = c.channel()
    silent = dict(value, **{'dest-uri': 'amqp://guest:guest@silent.coney-test:%d' % B_PORT})
    t0 = time.monotonic()
    check(put_shovel(CONEY_API, 'dn-silent', silent)[0] == 201, 'create')
    rtts = []
    row = None
    while time.monotonic() - t0 < 30:
        s0 = time.perf_counter()
        ch.queue_declare('canary', passive=False)
        rtts.append(time.perf_counter() - s0)
        row = shovel_state(CONEY_API, 'dn-silent') or {}
        if row.get('state') == 'terminated':
            break
    took = time.monotonic() - t0
    c.close()
    del_shovel(CONEY_API, 'dn-silent')
    rtts.sort()
    p99 = rtts[int(len(rtts) * 0.99)] * 1000
    print('    canary: %d round trips during a lookup nobody answers (%.1f s), p99 %.2f ms, '
          'max %.2f ms' % (len(rtts), took, p99, rtts[-1] * 1000))
    check(row.get('state') == 'terminated', 'row %r' % row)
    check('no answer' in row.get('reason', ''), 'reason %r' % row.get('reason'))
    check(took >= 1.5, 'terminated after %.1f s, before timeout x attempts (2 s)' % took)
    check(rtts[-1] * 1000 < 500 and p99 < 50, 'canary p99 %.1f ms, max %.1f ms' % (p99, rtts[-1] * 1000))


# ------------------------------------------------------------------ migration

MIG_N = 2000


def vconn(port, vhost, user, password):
    return pika.BlockingConnection(pika.ConnectionParameters(
        HOST, port, vhost, pika.PlainCredentials(user, password), heartbeat=0,
        blocked_connection_timeout=60, connection_attempts=1))


def vcount(port, vhost, user, password, queue):
    """Messages ready in `queue` of `vhost`, or -1 if it cannot be asked now."""
    try:
        c = vconn(port, vhost, user, password)
        try:
            return c.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            c.close()
    except Exception:  # noqa: BLE001 - a missing queue or a broker not ready answers -1
        return -1


def app_topology(api_port, vhost, user, password):
    """The migrated application's world, made through the management API of `api_port`:
    vhost, user with a password, permissions, a durable direct exchange, a durable queue
    with x-max-length, a binding and a policy."""
    steps = [
        ('PUT', '/vhosts/%s' % q(vhost), {}),
        ('PUT', '/users/%s' % q(user), {'password': password, 'tags': ''}),
        ('PUT', '/permissions/%s/%s' % (q(vhost), q(user)),
         {'configure': '.*', 'write': '.*', 'read': '.*'}),
        ('PUT', '/permissions/%s/guest' % q(vhost), {'configure': '.*', 'write': '.*', 'read': '.*'}),
        ('PUT', '/exchanges/%s/orders' % q(vhost), {'type': 'direct', 'durable': True}),
        ('PUT', '/queues/%s/orders-q' % q(vhost),
         {'durable': True, 'arguments': {'x-max-length': 100000}}),
        ('POST', '/bindings/%s/e/orders/q/orders-q' % q(vhost), {'routing_key': 'new'}),
        ('PUT', '/policies/%s/orders-limit' % q(vhost),
         {'pattern': '^orders', 'apply-to': 'queues', 'priority': 1,
          'definition': {'max-length-bytes': 100000000}}),
    ]
    for method, path, body in steps:
        status, answer = api(api_port, method, path, body)
        check(status in (200, 201, 204), '%s %s on %d: %d %r' % (method, path, api_port,
                                                                   status, answer))


def app_publish(port, vhost, user, password, n):
    """n persistent messages through the application's exchange and key, as it would."""
    c = vconn(port, vhost, user, password)
    ch = c.channel()
    for i in range(n):
        ch.basic_publish('orders', 'new', b'%d:order' % i,
                         pika.BasicProperties(delivery_mode=2, message_id='o%d' % i,
                                              content_type='text/plain'))
    c.close()
    wait_for('%d messages in %s/orders-q on %d' % (n, vhost, port),
             lambda: vcount(port, vhost, user, password, 'orders-q') == n, timeout=120)


def app_only(defs, vhost, user):
    """The part of a definitions export that is the application's: its vhost, its user and
    what lives in the vhost (the brokers' own guest user is left alone)."""
    out = {k: v for k, v in defs.items() if not isinstance(v, list)}
    out['vhosts'] = [v for v in defs.get('vhosts', []) if v['name'] == vhost]
    out['users'] = [u for u in defs.get('users', []) if u['name'] == user]
    for key in ['permissions', 'topic_permissions', 'queues', 'exchanges', 'bindings',
                'policies', 'parameters']:
        out[key] = [x for x in defs.get(key, []) if x.get('vhost') == vhost]
    return out


def check_imported(api_port, amqp_port, vhost, user, password, where):
    """On the importing broker: the user logs in with its password, and the queue (with its
    argument), exchange, binding and policy are there."""
    c = vconn(amqp_port, vhost, user, password)
    c.channel().queue_declare('orders-q', passive=True)
    c.close()
    status, qrow = api(api_port, 'GET', '/queues/%s/orders-q' % q(vhost))
    check(status == 200 and qrow['durable'] and qrow['arguments'] == {'x-max-length': 100000},
          '%s queue: %d %r' % (where, status, qrow))
    status, xrow = api(api_port, 'GET', '/exchanges/%s/orders' % q(vhost))
    check(status == 200 and xrow['type'] == 'direct' and xrow['durable'],
          '%s exchange: %d %r' % (where, status, xrow))
    status, brows = api(api_port, 'GET', '/bindings/%s/e/orders/q/orders-q' % q(vhost))
    check(status == 200 and [b['routing_key'] for b in brows] == ['new'],
          '%s binding: %d %r' % (where, status, brows))
    status, prow = api(api_port, 'GET', '/policies/%s/orders-limit' % q(vhost))
    check(status == 200 and prow['pattern'] == '^orders' and prow['apply-to'] == 'queues'
          and prow['definition'] == {'max-length-bytes': 100000000},
          '%s policy: %d %r' % (where, status, prow))


def app_consume(port, vhost, user, password, n, where):
    """Consumes the moved messages as the application would (acks), checks all n arrived in
    order, persistent, with their ids; then one published through the migrated exchange and
    binding arrives in the queue."""
    c = vconn(port, vhost, user, password)
    ch = c.channel()
    ch.basic_qos(prefetch_count=500)
    got = []

    def on_message(chan, m, props, body):
        got.append((body, props.delivery_mode, props.message_id, props.content_type))
        chan.basic_ack(m.delivery_tag)

    tag = ch.basic_consume('orders-q', on_message)
    deadline = time.monotonic() + WAIT
    while len(got) < n and time.monotonic() < deadline:
        c.process_data_events(time_limit=0.2)
    want = [(b'%d:order' % i, 2, 'o%d' % i, 'text/plain') for i in range(n)]
    check(len(got) == n, '%s: %d of %d messages consumed' % (where, len(got), n))
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    check(not bad, '%s: %d messages differ, first (index, got, want) %r' % (where, len(bad), bad[:1]))
    ch.basic_cancel(tag)
    ch.basic_publish('orders', 'new', b'after', pika.BasicProperties(delivery_mode=2))
    m = wait_for('%s: message through the migrated binding' % where,
                 lambda: ch.basic_get('orders-q', auto_ack=True)[2], timeout=10)
    check(m == b'after', '%s: through the binding %r' % (where, m))
    c.close()
    print('    %s: %d of %d consumed in order, persistent, with ids' % (where, len(got), n))


def rabbitmqctl(node, *cmd):
    cp = subprocess.run(['bash', os.path.join(brokerlib.REPO, 'scripts/rabbitmq.sh'), 'ctl',
                         node.dir] + list(cmd), stdin=subprocess.DEVNULL, capture_output=True,
                        timeout=120)
    check(cp.returncode == 0, 'rabbitmqctl %s: rc %d %s' % (
        ' '.join(cmd), cp.returncode, (cp.stdout + cp.stderr).decode(errors='replace')[-800:]))


def migrate_coney_to_rabbitmq(t, n):
    vhost, user, pw = 'mig-up', 'app-up', 'up-secret'
    app_topology(CONEY_API, vhost, user, pw)
    app_publish(CONEY_PORT, vhost, user, pw, n)
    status, defs = api(CONEY_API, 'GET', '/definitions')
    check(status == 200, 'coney export: %d %r' % (status, defs))
    path = os.path.join(t.tmp, 'coney-defs.json')
    with open(path, 'w') as f:
        json.dump(app_only(defs, vhost, user), f)
    rabbitmqctl(t.b, 'import_definitions', path)
    check_imported(t.b.api_port, B_PORT, vhost, user, pw, 'RabbitMQ after import')
    # The vhost is named: RabbitMQ 3.10's `amqp://` with no path is vhost '/', whatever
    # the shovel's own vhost.
    value = {'src-uri': 'amqp:///%s' % q(vhost), 'src-queue': 'orders-q',
             'dest-uri': 'amqp://%s:%s@%s:%d/%s' % (user, pw, HOST, B_PORT, q(vhost)),
             'dest-queue': 'orders-q', 'src-delete-after': 'queue-length'}
    status, answer = put_shovel(CONEY_API, 'migrate', value, vhost=vhost)
    check(status == 201, 'coney shovel: %d %r' % (status, answer))
    wait_for('coney shovel migrate deleted itself', lambda: api(
        CONEY_API, 'GET', '/parameters/shovel/%s/migrate' % q(vhost))[0] == 404, timeout=120)
    wait_for('%d messages on RabbitMQ' % n,
             lambda: vcount(B_PORT, vhost, user, pw, 'orders-q') == n, timeout=60)
    left = vcount(CONEY_PORT, vhost, user, pw, 'orders-q')
    check(left == 0, 'coney source queue holds %d after the shovel' % left)
    print('    coney → RabbitMQ: %d messages moved, %d left on coney' % (n, left))
    app_consume(B_PORT, vhost, user, pw, n, 'RabbitMQ')
    api(CONEY_API, 'DELETE', '/vhosts/%s' % q(vhost))
    api(t.b.api_port, 'DELETE', '/vhosts/%s' % q(vhost))


def migrate_rabbitmq_to_coney(t, n):
    vhost, user, pw = 'mig-down', 'app-down', 'down-secret'
    app_topology(t.a.api_port, vhost, user, pw)
    app_publish(A_PORT, vhost, user, pw, n)
    path = os.path.join(t.tmp, 'rabbitmq-defs.json')
    rabbitmqctl(t.a, 'export_definitions', path)
    with open(path) as f:
        defs = json.load(f)
    status, answer = api(CONEY_API, 'POST', '/definitions', app_only(defs, vhost, user))
    check(status in (200, 201, 204), 'coney import: %d %r' % (status, answer))
    check_imported(CONEY_API, CONEY_PORT, vhost, user, pw, 'coney after import')
    # RabbitMQ's own shovel plugin moves the messages, as an operator leaving RabbitMQ would.
    # The vhost is named: RabbitMQ 3.10's `amqp://` with no path is vhost '/', whatever
    # the shovel's own vhost.
    value = {'src-uri': 'amqp:///%s' % q(vhost), 'src-queue': 'orders-q',
             'dest-uri': 'amqp://%s:%s@%s:%d/%s' % (user, pw, HOST, CONEY_PORT, q(vhost)),
             'dest-queue': 'orders-q', 'src-delete-after': 'queue-length'}
    status, answer = put_shovel(t.a.api_port, 'migrate', value, vhost=vhost)
    check(status == 201, 'RabbitMQ shovel: %d %r' % (status, answer))
    wait_for('RabbitMQ shovel migrate deleted itself', lambda: api(
        t.a.api_port, 'GET', '/parameters/shovel/%s/migrate' % q(vhost))[0] == 404, timeout=120)
    wait_for('%d messages on coney' % n,
             lambda: vcount(CONEY_PORT, vhost, user, pw, 'orders-q') == n, timeout=60)
    left = vcount(A_PORT, vhost, user, pw, 'orders-q')
    check(left == 0, 'RabbitMQ source queue holds %d after the shovel' % left)
    print('    RabbitMQ → coney: %d messages moved, %d left on RabbitMQ' % (n, left))
    app_consume(CONEY_PORT, vhost, user, pw, n, 'coney')
    api(CONEY_API, 'DELETE', '/vhosts/%s' % q(vhost))
    api(t.a.api_port, 'DELETE', '/vhosts/%s' % q(vhost))


def test_migration_both_ways(t):
    """An application's definitions (vhost, user and password, permissions, exchange, queue
    with an argument, binding, policy) and 2,000 persistent messages move coney → RabbitMQ
    (export, rabbitmqctl import_definitions, coney shovel) and RabbitMQ → coney
    (rabbitmqctl export_definitions, POST /api/definitions, RabbitMQ's shovel); the user logs
    in on the new broker and consumes every message in order with its properties."""
    migrate_coney_to_rabbitmq(t, MIG_N)
    migrate_rabbitmq_to_coney(t, MIG_N)


TESTS = [
    test_validation_matches_rabbitmq,
    test_parameter_api_matches_rabbitmq,
    test_coney_to_rabbitmq_as_rabbitmqs_shovel,
    test_rabbitmq_to_coney_exchange_source,
    test_status_listing_matches_rabbitmq,
    test_listings_follow_vhost_access,
    test_restart_and_delete_as_rabbitmq,
    test_delete_after_as_rabbitmq,
    test_parameters_survive_restart_and_export,
    test_static_shovel_from_config,
    test_reconnects_without_busy_loop,
    test_canary_round_trip_while_shovelling,
    test_host_names_resolve_without_blocking,
    test_chaos_coney_to_rabbitmq,
    test_chaos_rabbitmq_to_coney,
    test_migration_both_ways,
]


# ------------------------------------------------------------------ throughput

def bench(t, n, size):
    """CPU per message on the shovelling side: coney → RabbitMQ B against RabbitMQ A → B
    (rabbitmq_shovel), n persistent messages of `size` bytes, on-confirm."""
    results = {}
    for label, src_port, api_port, pid in [('coney', CONEY_PORT, CONEY_API, t.coney.proc.pid),
                                           ('rabbitmq', A_PORT, t.a.api_port, t.a.pid)]:
        src, dst = 'bench-' + label, 'bench-%s-dst' % label
        publish(src_port, src, n, size=size)
        value = {'src-uri': 'amqp://', 'src-queue': src, 'dest-uri':
                 'amqp://guest:guest@%s:%d' % (HOST, B_PORT), 'dest-queue': dst}
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        put_shovel(api_port, 'bench', value)
        wait_for('bench %s' % label, lambda: count(B_PORT, dst) >= n, timeout=600, every=0.05)
        wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        del_shovel(api_port, 'bench')
        results[label] = (wall, cpu)
        print('bench %s: %d x %d B persistent, on-confirm: %.2f s wall, %.0f msg/s, '
              '%.2f s CPU on the shovelling side, %.1f us CPU per message'
              % (label, n, size, wall, n / wall, cpu, cpu / n * 1e6))
        api(t.b.api_port, 'DELETE', '/queues/%%2F/%s' % dst)
    (cw, cc), (rw, rc) = results['coney'], results['rabbitmq']
    print('bench ratio coney/rabbitmq: CPU per message %.2fx, wall %.2fx' % (cc / rc, cw / rw))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--coney', default=os.path.join(brokerlib.REPO, 'target/release/coney'))
    ap.add_argument('--only', default=None)
    ap.add_argument('--chaos-messages', type=int, default=50_000)
    ap.add_argument('--bench', action='store_true', help='throughput only')
    ap.add_argument('--bench-messages', type=int, default=100_000)
    ap.add_argument('--bench-size', type=int, default=1024)
    ap.add_argument('--ports', type=int, default=None,
                    help='AMQP port base B: coney B (and B+1 for the static shovel), RabbitMQ '
                         'A B+5 and B B+6, each HTTP port +10000 (default 5721, 5731, 5732)')
    ap.add_argument('--tmp-prefix', default='shovel-')
    args = ap.parse_args()
    if args.ports:
        global CONEY_PORT, CONEY_API, A_PORT, B_PORT
        CONEY_PORT, CONEY_API = args.ports, args.ports + 10000
        A_PORT, B_PORT = args.ports + 5, args.ports + 6
    t = Env()
    t.binary = os.path.abspath(args.coney)
    t.chaos_n = args.chaos_messages
    t.tmp = tempfile.mkdtemp(prefix=args.tmp_prefix, dir='/tmp')
    passed = failed = 0
    t.a = Rabbit(os.path.join(t.tmp, 'rmq-a'), A_PORT)
    t.b = Rabbit(os.path.join(t.tmp, 'rmq-b'), B_PORT)
    # coney resolves host names with the servers of CONEY_RESOLV_CONF: a fake DNS server
    # here, with a 1 s timeout and 2 attempts (test_host_names_resolve_without_blocking).
    t.dns = FakeDns({'rabbit-b.coney-test': HOST}, {'silent.coney-test'})
    resolv = os.path.join(t.tmp, 'resolv.conf')
    with open(resolv, 'w') as f:
        f.write('nameserver %s:%d\noptions timeout:1 attempts:2\n' % (HOST, t.dns.port))
    os.environ['CONEY_RESOLV_CONF'] = resolv
    t.coney = brokerlib.Coney(t.binary, os.path.join(t.tmp, 'coney'), os.path.join(t.tmp, 'coney.log'),
                              port=CONEY_PORT,
                              args=['--management-listen', '%s:%d' % (HOST, CONEY_API),
                                    '--prometheus-listen', 'off'])
    try:
        starters = [threading.Thread(target=r.start) for r in (t.a, t.b)]
        for s in starters:
            s.start()
        t.coney.start()
        for s in starters:
            s.join()
        if t.a.pid is None or t.b.pid is None:
            raise brokerlib.BrokerError('a RabbitMQ node did not start')
        if args.bench:
            bench(t, args.bench_messages, args.bench_size)
            return 0
        for test in TESTS:
            if args.only and args.only not in test.__name__:
                continue
            t0 = time.monotonic()
            try:
                if not t.coney.alive():
                    t.coney.close()
                    t.coney.start()
                test(t)
                passed += 1
                print('PASS %s (%.1fs)' % (test.__name__, time.monotonic() - t0), flush=True)
            except Exception:  # noqa: BLE001 - every failure is reported and counted
                failed += 1
                print('FAIL %s' % test.__name__)
                traceback.print_exc(file=sys.stdout)
                print(t.coney.log_tail(20))
    except brokerlib.BrokerError as e:
        failed += 1
        print('FAIL setup: %s' % e)
    finally:
        t.coney.close()
        for r in (t.a, t.b):
            r.stop()
        if failed == 0:
            shutil.rmtree(t.tmp, ignore_errors=True)
        else:
            print('kept %s' % t.tmp)
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
