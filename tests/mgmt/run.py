"""The management HTTP API, Prometheus endpoint and rabbitmqadmin, checked against a running
broker: every check was first run against RabbitMQ 3.10 with rabbitmq_management and
rabbitmq_prometheus, and coney must give the same answers (status codes, JSON field names,
error texts, metric names and labels).

    .venv/mgmt/bin/python tests/mgmt/run.py --amqp PORT --http PORT --prometheus PORT [--only NAME]

Clients are independent of coney: http.client from the standard library for the API, pika
for AMQP traffic, Debian's rabbitmqadmin, and prometheus_client's text-format parser.
Statistics in RabbitMQ lag events by up to its collect_statistics_interval, so counts are
awaited (polled until they match, bounded by WAIT_S), never slept for.

One line per check: `PASS name` or `FAIL name: reason`; exit status 1 if any failed.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import http.client
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'lib'))
import brokerlib  # noqa: E402

HOST = brokerlib.HOST
# Longest wait for a statistic to show an event (RabbitMQ here collects every second).
WAIT_S = 20
# Every check's own names start with this, so a check never sees another's objects.
P = 'mgmt-test-'


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


class Api:
    """Basic-auth requests to the management listener; JSON in, (status, headers, body) out."""

    def __init__(self, port, user='guest', password='guest'):
        self.port, self.user, self.password = port, user, password

    def call(self, method, path, body=None, headers=None, auth=True):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        hdrs = dict(headers or {})
        if auth:
            token = base64.b64encode(('%s:%s' % (self.user, self.password)).encode()).decode()
            hdrs['Authorization'] = 'Basic ' + token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs['Content-Type'] = 'application/json'
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        parsed = None
        if raw and resp.getheader('content-type', '').startswith('application/json'):
            parsed = json.loads(raw)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed if parsed is not None else raw

    def get(self, path):
        status, _, body = self.call('GET', path)
        expect(status == 200, 'GET %s: status %s, body %r' % (path, status, body))
        return body

    def status_of(self, method, path, body=None, headers=None):
        status, _, out = self.call(method, path, body, headers)
        return status, out


def q(name):
    return urllib.parse.quote(name, safe='')


def eventually(fn, what, timeout=WAIT_S):
    """Polls fn() until it returns a true value; fails with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise CheckFailed('%s (last seen: %r)' % (what, last))


def pika_conn(ctx, name=None, **kw):
    return brokerlib.pika_connect(ctx.amqp, name=name, **kw)


def queue_field(api, name, field):
    status, _, body = api.call('GET', '/api/queues/%2F/' + q(name))
    return body.get(field) if status == 200 and isinstance(body, dict) else None


# ---------------------------------------------------------------- checks

def check_auth(ctx):
    """Without credentials 401 with RabbitMQ's realm; a wrong password 401; whoami names the
    user and its tags as a list."""
    status, hdrs, _ = ctx.api.call('GET', '/api/whoami', auth=False)
    expect(status == 401, 'no credentials: status %s' % status)
    expect(hdrs.get('www-authenticate') == 'Basic realm="RabbitMQ Management"',
           'www-authenticate: %r' % hdrs.get('www-authenticate'))
    status, _, _ = Api(ctx.http, 'guest', 'wrong').call('GET', '/api/whoami')
    expect(status == 401, 'wrong password: status %s' % status)
    who = ctx.api.get('/api/whoami')
    expect(who.get('name') == 'guest' and who.get('tags') == ['administrator'], 'whoami %r' % who)


def check_overview(ctx):
    """Overview has RabbitMQ's top-level fields, a listener for the AMQP port, and its queue
    total follows declares made over AMQP."""
    ov = ctx.api.get('/api/overview')
    for key in ('management_version', 'product_name', 'product_version', 'rabbitmq_version',
                'node', 'object_totals', 'queue_totals', 'message_stats', 'listeners',
                'exchange_types'):
        expect(key in ov, 'overview lacks %s' % key)
    expect(any(l.get('protocol') == 'amqp' and l.get('port') == ctx.amqp for l in ov['listeners']),
           'no amqp listener on %d in %r' % (ctx.amqp, ov['listeners']))
    types = sorted(t['name'] for t in ov['exchange_types'])
    expect({'direct', 'fanout', 'headers', 'topic'} <= set(types), 'exchange types %r' % types)
    before = ov['object_totals']['queues']
    conn = pika_conn(ctx)
    ch = conn.channel()
    for i in range(3):
        ch.queue_declare(P + 'ov-%d' % i)
    eventually(lambda: ctx.api.get('/api/overview')['object_totals']['queues'] == before + 3,
               'object_totals.queues is not %d' % (before + 3))
    for i in range(3):
        ch.queue_delete(P + 'ov-%d' % i)
    conn.close()


def check_queue_lifecycle(ctx):
    """PUT creates (201) then is idempotent (204), an inequivalent redeclare is 400 with the
    AMQP text, GET shows the declared properties, DELETE 204, then GET 404."""
    path = '/api/queues/%2F/' + q(P + 'life')
    decl = {'durable': True, 'arguments': {'x-max-length': 5}}
    st, _ = ctx.api.status_of('PUT', path, decl)
    expect(st == 201, 'first PUT: %s' % st)
    st, _ = ctx.api.status_of('PUT', path, decl)
    expect(st == 204, 'second PUT: %s' % st)
    st, body = ctx.api.status_of('PUT', path, {'durable': False})
    want = ("inequivalent arg 'durable' for queue '%slife' in vhost '/': received 'false' "
            "but current is 'true'" % P)
    expect(st == 400 and body == {'error': 'bad_request', 'reason': want}, 'inequivalent: %s %r' % (st, body))
    got = ctx.api.get(path)
    for key, val in (('name', P + 'life'), ('vhost', '/'), ('durable', True), ('auto_delete', False),
                     ('exclusive', False), ('arguments', {'x-max-length': 5})):
        expect(got.get(key) == val, 'GET %s = %r, not %r' % (key, got.get(key), val))
    st, _ = ctx.api.status_of('DELETE', path)
    expect(st == 204, 'DELETE: %s' % st)
    st, body = ctx.api.status_of('GET', path)
    expect(st == 404 and body == {'error': 'Object Not Found', 'reason': 'Not Found'},
           'GET after delete: %s %r' % (st, body))


def check_queue_counts(ctx):
    """messages_ready, messages_unacknowledged, messages and consumers follow AMQP traffic."""
    name = P + 'counts'
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.queue_declare(name)
    for i in range(7):
        ch.basic_publish('', name, b'm%d' % i)
    eventually(lambda: queue_field(ctx.api, name, 'messages_ready') == 7, 'messages_ready != 7')
    ch.basic_qos(prefetch_count=2)
    got = []
    ch.basic_consume(name, lambda c, m, p, b: got.append(m.delivery_tag))
    deadline = time.monotonic() + WAIT_S
    while len(got) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)

    def settled():
        conn.process_data_events(time_limit=0)
        body = ctx.api.get('/api/queues/%2F/' + q(name))
        return (body.get('messages_ready'), body.get('messages_unacknowledged'),
                body.get('messages'), body.get('consumers')) == (5, 2, 7, 1)
    eventually(settled, 'ready/unacked/messages/consumers != 5/2/7/1')
    ch.queue_delete(name)
    conn.close()


def check_get_and_purge(ctx):
    """POST /get returns messages with RabbitMQ's fields and requeues them with
    ack_requeue_true; DELETE /contents purges (204) and AMQP sees an empty queue at once."""
    name = P + 'get'
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.queue_declare(name)
    import pika
    for i in range(3):
        ch.basic_publish('', name, b'hello-%d' % i, pika.BasicProperties(delivery_mode=2))
    path = '/api/queues/%2F/' + q(name)
    st, _, msgs = ctx.api.call('POST', path + '/get',
                               {'count': 2, 'ackmode': 'ack_requeue_true', 'encoding': 'auto'})
    expect(st == 200 and isinstance(msgs, list) and len(msgs) == 2, 'get: %s %r' % (st, msgs))
    m = msgs[0]
    want = {'payload': 'hello-0', 'payload_encoding': 'string', 'payload_bytes': 7,
            'redelivered': False, 'exchange': '', 'routing_key': name, 'message_count': 2,
            'properties': {'delivery_mode': 2}}
    expect(m == want, 'first message %r, want %r' % (m, want))
    ok = ch.queue_declare(name, passive=True)
    expect(ok.method.message_count == 3, 'after get+requeue %d messages' % ok.method.message_count)
    st, _ = ctx.api.status_of('DELETE', path + '/contents')
    expect(st == 204, 'purge: %s' % st)
    ok = ch.queue_declare(name, passive=True)
    expect(ok.method.message_count == 0, 'after purge %d messages' % ok.method.message_count)
    ch.queue_delete(name)
    conn.close()


def check_exchanges_and_bindings(ctx):
    """Exchange PUT/GET/DELETE, a binding POST answers 201 with its Location, publish through
    the API reports routed true/false and the message arrives over AMQP, binding DELETE 204."""
    x, qn = P + 'x', P + 'bq'
    xp = '/api/exchanges/%2F/' + q(x)
    st, _ = ctx.api.status_of('PUT', xp, {'type': 'direct', 'durable': False})
    expect(st == 201, 'exchange PUT: %s' % st)
    got = ctx.api.get(xp)
    for key, val in (('name', x), ('type', 'direct'), ('durable', False), ('auto_delete', False),
                     ('internal', False), ('vhost', '/')):
        expect(got.get(key) == val, 'exchange %s = %r' % (key, got.get(key)))
    st, _ = ctx.api.status_of('PUT', '/api/queues/%2F/' + q(qn), {'durable': False})
    expect(st == 201, 'queue PUT: %s' % st)
    bp = '/api/bindings/%2F/e/' + q(x) + '/q/' + q(qn)
    st, hdrs, _ = ctx.api.call('POST', bp, {'routing_key': 'k1', 'arguments': {}})
    expect(st == 201 and hdrs.get('location') == q(qn) + '/k1', 'binding POST: %s %r' % (st, hdrs.get('location')))
    listed = ctx.api.get(bp)
    expect([(b['source'], b['destination'], b['routing_key'], b['properties_key']) for b in listed]
           == [(x, qn, 'k1', 'k1')], 'bindings %r' % listed)
    st, _, out = ctx.api.call('POST', xp + '/publish', {'routing_key': 'k1', 'properties': {},
                                                        'payload': 'via-api', 'payload_encoding': 'string'})
    expect(st == 200 and out == {'routed': True}, 'publish k1: %s %r' % (st, out))
    st, _, out = ctx.api.call('POST', xp + '/publish', {'routing_key': 'other', 'properties': {},
                                                        'payload': 'x', 'payload_encoding': 'string'})
    expect(out == {'routed': False}, 'publish other: %r' % (out,))
    conn = pika_conn(ctx)
    ch = conn.channel()
    method, _, body = ch.basic_get(qn, auto_ack=True)
    expect(method is not None and body == b'via-api', 'AMQP get: %r' % (body,))
    st, _ = ctx.api.status_of('DELETE', bp + '/k1')
    expect(st == 204, 'binding DELETE: %s' % st)
    expect(ctx.api.get(bp) == [], 'binding still listed')
    for path in (xp, '/api/queues/%2F/' + q(qn)):
        st, _ = ctx.api.status_of('DELETE', path)
        expect(st == 204, 'DELETE %s: %s' % (path, st))
    conn.close()


def check_connections_channels_consumers(ctx):
    """A pika connection is listed with its user, vhost and client-provided name, its channel
    and consumer too; DELETE on the connection closes it with 320 and the X-Reason text."""
    import pika
    name = P + 'conns'
    conn = pika_conn(ctx, name=P + 'client')
    ch = conn.channel()
    ch.queue_declare(name)
    ch.basic_qos(prefetch_count=3)
    ch.basic_consume(name, lambda *a: None, consumer_tag=P + 'ctag')

    def mine():
        conn.process_data_events(time_limit=0)
        # RabbitMQ lists a connection before its first statistics (channels) arrive.
        return [c for c in ctx.api.get('/api/connections')
                if c.get('client_properties', {}).get('connection_name') == P + 'client'
                and 'channels' in c]
    found = eventually(mine, 'connection not listed')[0]
    expect(found.get('user') == 'guest' and found.get('vhost') == '/', 'connection %r' % found)
    expect(found.get('channels') == 1 and found.get('protocol') == 'AMQP 0-9-1', 'connection %r' % found)

    def consumer():
        conn.process_data_events(time_limit=0)
        return [c for c in ctx.api.get('/api/consumers') if c.get('consumer_tag') == P + 'ctag']
    cons = eventually(consumer, 'consumer not listed')[0]
    expect(cons['queue'] == {'name': name, 'vhost': '/'} and cons['prefetch_count'] == 3
           and cons['ack_required'] is True, 'consumer %r' % cons)
    chans = [c for c in ctx.api.get('/api/channels')
             if c.get('connection_details', {}).get('name') == found['name']]
    expect(len(chans) == 1 and chans[0].get('number') == 1, 'channels %r' % chans)
    st, _ = ctx.api.status_of('DELETE', '/api/connections/' + q(found['name']),
                              headers={'X-Reason': 'closed by test'})
    expect(st == 204, 'connection DELETE: %s' % st)
    deadline = time.monotonic() + WAIT_S
    closed = None
    while time.monotonic() < deadline and closed is None:
        try:
            conn.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosed as e:
            closed = e
    expect(closed is not None, 'pika connection still open')
    expect(brokerlib.reply_code(closed) == 320 and 'closed by test' in str(closed),
           'close: %r' % (closed,))
    conn2 = pika_conn(ctx)
    conn2.channel().queue_delete(name)
    conn2.close()


def check_vhosts_users_permissions(ctx):
    """A vhost, a user with tags and its permissions made through the API work over AMQP (the
    user logs in to the vhost), are listed, and are removed by DELETE."""
    import pika
    vh, user = P + 'vh', P + 'user'
    st, _ = ctx.api.status_of('PUT', '/api/vhosts/' + q(vh), {})
    expect(st == 201, 'vhost PUT: %s' % st)
    st, _ = ctx.api.status_of('PUT', '/api/users/' + q(user), {'password': 'secret', 'tags': 'monitoring'})
    expect(st == 201, 'user PUT: %s' % st)
    st, _ = ctx.api.status_of('PUT', '/api/permissions/%s/%s' % (q(vh), q(user)),
                              {'configure': '.*', 'write': '.*', 'read': '.*'})
    expect(st == 201, 'permissions PUT: %s' % st)
    got = ctx.api.get('/api/users/' + q(user))
    expect(got.get('name') == user and got.get('tags') == ['monitoring'] and 'password_hash' in got,
           'user %r' % got)
    perms = ctx.api.get('/api/permissions/%s/%s' % (q(vh), q(user)))
    expect(perms == {'user': user, 'vhost': vh, 'configure': '.*', 'write': '.*', 'read': '.*'},
           'permissions %r' % perms)
    expect(any(v['name'] == vh for v in ctx.api.get('/api/vhosts')), 'vhost not listed')
    params = pika.ConnectionParameters(HOST, ctx.amqp, vh, pika.PlainCredentials(user, 'secret'))
    c = pika.BlockingConnection(params)
    c.channel().queue_declare(P + 'in-vh')
    c.close()
    expect(ctx.api.get('/api/queues/' + q(vh) + '/' + q(P + 'in-vh'))['vhost'] == vh, 'queue in vhost')
    who = Api(ctx.http, user, 'secret').get('/api/whoami')
    expect(who == {'name': user, 'tags': ['monitoring']}, 'whoami as monitoring %r' % who)
    for path in ('/api/vhosts/' + q(vh), '/api/users/' + q(user)):
        st, _ = ctx.api.status_of('DELETE', path)
        expect(st == 204, 'DELETE %s: %s' % (path, st))
    st, _ = ctx.api.status_of('GET', '/api/vhosts/' + q(vh))
    expect(st == 404, 'vhost after delete: %s' % st)


def check_tag_rules(ctx):
    """A user without a management tag is refused the API (401 "Not management user"); a
    monitoring user may read but not create."""
    plain, mon = P + 'plain', P + 'mon'
    for user, tags in ((plain, ''), (mon, 'monitoring')):
        st, _ = ctx.api.status_of('PUT', '/api/users/' + q(user), {'password': 'pw', 'tags': tags})
        expect(st == 201, 'user PUT %s: %s' % (user, st))
    st, _, body = Api(ctx.http, plain, 'pw').call('GET', '/api/overview')
    expect(st == 401 and body == {'error': 'not_authorised', 'reason': 'Not management user'},
           'no tags: %s %r' % (st, body))
    st, _, _ = Api(ctx.http, mon, 'pw').call('GET', '/api/queues')
    expect(st == 200, 'monitoring GET queues: %s' % st)
    st, _, body = Api(ctx.http, mon, 'pw').call('PUT', '/api/vhosts/' + q(P + 'nope'), {})
    expect(st == 401 and body.get('error') == 'not_authorised', 'monitoring PUT vhost: %s %r' % (st, body))
    for user in (plain, mon):
        ctx.api.status_of('DELETE', '/api/users/' + q(user))


def check_definitions(ctx):
    """GET /api/definitions has RabbitMQ's sections and the objects declared over AMQP; a POST
    of definitions creates what they name."""
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.exchange_declare(P + 'defx', 'topic', durable=True)
    ch.queue_declare(P + 'defq', durable=True)
    ch.queue_bind(P + 'defq', P + 'defx', 'a.#')
    defs = ctx.api.get('/api/definitions')
    for key in ('users', 'vhosts', 'permissions', 'queues', 'exchanges', 'bindings'):
        expect(isinstance(defs.get(key), list), 'definitions lack %s' % key)
    expect(any(x['name'] == P + 'defx' and x['type'] == 'topic' for x in defs['exchanges']), 'exchange')
    expect(any(b['source'] == P + 'defx' and b['destination'] == P + 'defq'
               and b['routing_key'] == 'a.#' for b in defs['bindings']), 'binding')
    new = {'queues': [{'name': P + 'imported', 'vhost': '/', 'durable': True, 'auto_delete': False,
                       'arguments': {}}]}
    st, _ = ctx.api.status_of('POST', '/api/definitions', new)
    expect(st in (200, 204), 'definitions POST: %s' % st)
    ok = ch.queue_declare(P + 'imported', passive=True)
    expect(ok.method.queue == P + 'imported', 'imported queue missing')
    for name in (P + 'defq', P + 'imported'):
        ch.queue_delete(name)
    ch.exchange_delete(P + 'defx')
    conn.close()


def check_health(ctx):
    """The alarms health check and the aliveness test answer ok; an unknown vhost is 404."""
    expect(ctx.api.get('/api/health/checks/alarms') == {'status': 'ok'}, 'alarms')
    expect(ctx.api.get('/api/aliveness-test/%2F') == {'status': 'ok'}, 'aliveness')
    st, _ = ctx.api.status_of('GET', '/api/aliveness-test/' + q(P + 'novh'))
    expect(st == 404, 'aliveness of unknown vhost: %s' % st)


def check_pagination_columns(ctx):
    """page/page_size/name filter a listing into RabbitMQ's envelope; columns keeps only the
    named fields; a page past the end is 400."""
    conn = pika_conn(ctx)
    ch = conn.channel()
    names = [P + 'pg-%d' % i for i in range(5)]
    for n in names:
        ch.queue_declare(n)
    got = ctx.api.get('/api/queues?page=2&page_size=2&name=%s&columns=name,vhost'
                      % q(P + 'pg-'))
    want = {'filtered_count': 5, 'item_count': 2, 'page': 2, 'page_count': 3, 'page_size': 2,
            'items': [{'name': names[2], 'vhost': '/'}, {'name': names[3], 'vhost': '/'}]}
    got_cmp = {k: got.get(k) for k in want}
    expect(got_cmp == want, 'page 2: %r' % got_cmp)
    st, _ = ctx.api.status_of('GET', '/api/queues?page=9&page_size=2&name=%s' % q(P + 'pg-'))
    expect(st == 400, 'page past the end: %s' % st)
    for n in names:
        ch.queue_delete(n)
    conn.close()


def check_rabbitmqadmin(ctx):
    """Debian's rabbitmqadmin declares, publishes, lists and gets through the API."""
    exe = shutil.which('rabbitmqadmin') or '/usr/bin/rabbitmqadmin'
    expect(os.path.exists(exe), 'rabbitmqadmin not installed')
    base = [sys.executable, exe, '-H', HOST, '-P', str(ctx.http), '-u', 'guest', '-p', 'guest']

    def run(*args):
        r = subprocess.run(base + list(args), capture_output=True, text=True, timeout=60)
        expect(r.returncode == 0, 'rabbitmqadmin %s: rc %d %s' % (' '.join(args), r.returncode, r.stderr))
        return r.stdout
    name = P + 'admin'
    run('declare', 'queue', 'name=' + name, 'durable=false')
    run('publish', 'exchange=amq.default', 'routing_key=' + name, 'payload=from-admin')
    eventually(lambda: name + '\t1' in run('-f', 'tsv', '-q', 'list', 'queues', 'name', 'messages'),
               'list queues does not show 1 message')
    out = run('-f', 'tsv', '-q', 'get', 'queue=' + name, 'ackmode=ack_requeue_false')
    expect('from-admin' in out, 'get printed %r' % out)
    run('delete', 'queue', 'name=' + name)


def check_prometheus(ctx):
    """/metrics parses with prometheus_client and has rabbitmq_prometheus's aggregated names;
    /metrics/per-object has the queue's ready count under its vhost and queue labels."""
    from prometheus_client.parser import text_string_to_metric_families
    name = P + 'prom'
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.queue_declare(name)
    for _ in range(4):
        ch.basic_publish('', name, b'p')

    def scrape(path):
        c = http.client.HTTPConnection(HOST, ctx.prometheus, timeout=30)
        c.request('GET', path)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        expect(r.status == 200, '%s: status %s' % (path, r.status))
        expect(r.getheader('content-type', '').startswith('text/plain'), 'content-type')
        return {f.name: f for f in text_string_to_metric_families(body)}
    fams = scrape('/metrics')
    for want in ('rabbitmq_connections', 'rabbitmq_channels', 'rabbitmq_queues',
                 'rabbitmq_queue_messages_ready', 'rabbitmq_queue_messages_unacked',
                 'rabbitmq_process_resident_memory_bytes', 'rabbitmq_channel_messages_published',
                 'rabbitmq_connections_opened'):
        expect(want in fams, '/metrics lacks %s' % want)

    def per_object():
        fams = scrape('/metrics/per-object')
        fam = fams.get('rabbitmq_queue_messages_ready')
        if fam is None:
            return None
        return [s.value for s in fam.samples if s.labels.get('queue') == name and s.labels.get('vhost') == '/']
    eventually(lambda: per_object() == [4.0], 'per-object ready count for the queue is not 4')
    ch.queue_delete(name)
    conn.close()


# Queues for the big-listing check, and the round-trip bound issue 13 sets for the canary.
BIG_QUEUES = 10000
CANARY_P99_MS = 10.0


def check_big_listing_keeps_amqp_responsive(ctx):
    """GET /api/queues (every field) over 10,000 queues answers whole (valid JSON, every queue) while an
    AMQP canary on another connection keeps its p99 round trip under 10 ms: the listing is
    paced across loop turns instead of stopping every client (coney's bound; RabbitMQ runs it
    on other cores, so the check is coney's own)."""
    if ctx.api.get('/api/overview').get('product_name') != 'coney':
        raise Skipped('a bound of coney\'s single thread')
    conn = pika_conn(ctx)
    ch = conn.channel()
    names = [P + 'big-%05d' % i for i in range(BIG_QUEUES)]
    for n in names:
        ch.queue_declare(n, auto_delete=False)
    canary = pika_conn(ctx)
    cch = canary.channel()
    cch.queue_declare(P + 'canary')
    # The listings run in another process: parsing 10,000 queues of JSON here would hold the
    # GIL and stall this process's canary, not the broker.
    lister = subprocess.Popen(
        [sys.executable, '-c', LISTER, str(ctx.http), P + 'big-', '5'],
        stdout=subprocess.PIPE, text=True)
    rtts = []
    deadline = time.monotonic() + 120
    while lister.poll() is None and time.monotonic() < deadline:
        t0 = time.perf_counter()
        cch.queue_declare(P + 'canary', passive=True)
        rtts.append((time.perf_counter() - t0) * 1000)
    out, _ = lister.communicate(timeout=60)
    listed = [int(x) for x in out.split()]
    for n in names:
        ch.queue_delete(n)
    cch.queue_delete(P + 'canary')
    canary.close()
    conn.close()
    expect(listed and all(c == BIG_QUEUES for c in listed), 'listings saw %r of %d queues' % (listed, BIG_QUEUES))
    rtts.sort()
    p99 = rtts[int(len(rtts) * 0.99) - 1] if rtts else None
    print('  big listing: %d listings, %d canary round trips, p50 %.2f ms, p99 %.2f ms, max %.2f ms'
          % (len(listed), len(rtts), rtts[len(rtts) // 2], p99, rtts[-1]), flush=True)
    expect(len(rtts) >= 100, 'only %d canary round trips' % len(rtts))
    expect(p99 < CANARY_P99_MS, 'canary p99 %.2f ms >= %.1f ms' % (p99, CANARY_P99_MS))


# The lister process: GET /api/queues N times, print how many queues of the prefix each saw.
LISTER = '''
import base64, http.client, json, sys
port, prefix, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
auth = 'Basic ' + base64.b64encode(b'guest:guest').decode()
for _ in range(n):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    c.request('GET', '/api/queues', headers={'Authorization': auth})
    body = json.loads(c.getresponse().read())
    print(sum(1 for q in body if q['name'].startswith(prefix)), flush=True)
'''


# ---------------------------------------------------------------- policies (issue 13 item 3)

def pol_path(name, vhost='/'):
    return '/api/policies/%s/%s' % (q(vhost), q(name))


def policy_fields(p):
    return {k: p.get(k) for k in ('vhost', 'name', 'pattern', 'apply-to', 'definition', 'priority')}


def check_policy_api(ctx):
    """PUT a policy 201 then 204, GET it with RabbitMQ's fields, list it (all and by vhost),
    DELETE 204 then 404; missing keys, bad values, unknown keys and an unknown vhost get
    RabbitMQ's status and text."""
    name = P + 'pol-api'
    body = {'pattern': '^' + P + 'pol-api', 'definition': {'max-length': 5}, 'priority': 3,
            'apply-to': 'queues'}
    st, _ = ctx.api.status_of('PUT', pol_path(name), body)
    expect(st == 201, 'first PUT: %s' % st)
    st, _ = ctx.api.status_of('PUT', pol_path(name), body)
    expect(st == 204, 'second PUT: %s' % st)
    want = {'vhost': '/', 'name': name, 'pattern': body['pattern'], 'apply-to': 'queues',
            'definition': {'max-length': 5}, 'priority': 3}
    got = ctx.api.get(pol_path(name))
    expect(got == want, 'GET %r' % got)
    for path in ('/api/policies', '/api/policies/%2F'):
        listed = [p for p in ctx.api.get(path) if p.get('name') == name]
        expect(listed == [want], '%s lists %r' % (path, listed))
    bad = [
        ({'pattern': 'a'}, "[{key_missing,definition}]"),
        ({}, "[{key_missing,pattern},{key_missing,definition}]"),
        ({'pattern': 'a', 'definition': {'max-length': -1}},
         "Validation failed\n\n-1 is not a valid maximum length\n"),
        ({'pattern': 'a', 'definition': {'message-ttl': 'z'}},
         'Validation failed\n\n&lt;&lt;"z"&gt;&gt; is not a valid message TTL\n'),
        ({'pattern': 'a', 'definition': {'max-priority': 5}},
         'Validation failed\n\n[{&lt;&lt;"max-priority"&gt;&gt;,5}] are not recognised policy settings\n'),
        ({'pattern': 'a', 'definition': {}}, "Validation failed\n\nno policy provided\n"),
        ({'pattern': 'a', 'definition': {'max-length': 1}, 'apply-to': 'foo'},
         "Validation failed\n\napply-to 'foo' unrecognised; should be 'queues', 'exchanges' or 'all'\n"),
        ({'pattern': 'a', 'definition': {'max-length': 1}, 'priority': 'x'},
         'Validation failed\n\npriority should be a number, actually was &lt;&lt;"x"&gt;&gt;\n'),
    ]
    for b, reason in bad:
        st, out = ctx.api.status_of('PUT', pol_path(P + 'pol-bad'), b)
        expect(st == 400 and out == {'error': 'bad_request', 'reason': reason},
               'PUT %r: %s %r' % (b, st, out))
    st, out = ctx.api.status_of('PUT', pol_path(name, P + 'novh'), body)
    expect(st == 404 and out == {'error': 'not_found', 'reason': 'vhost_not_found'},
           'unknown vhost: %s %r' % (st, out))
    st, _ = ctx.api.status_of('DELETE', pol_path(name))
    expect(st == 204, 'DELETE: %s' % st)
    for method in ('GET', 'DELETE'):
        st, out = ctx.api.status_of(method, pol_path(name))
        expect(st == 404 and out == {'error': 'Object Not Found', 'reason': 'Not Found'},
               '%s after delete: %s %r' % (method, st, out))


def check_policy_tag_rules(ctx):
    """A management user may list policies but not read, set or clear one (401); a
    policymaker may."""
    for user, tags in ((P + 'pol-mu', 'management'), (P + 'pol-pm', 'policymaker')):
        ctx.api.status_of('PUT', '/api/users/' + q(user), {'password': 'p', 'tags': tags})
        ctx.api.status_of('PUT', '/api/permissions/%2F/' + q(user),
                          {'configure': '.*', 'write': '.*', 'read': '.*'})
    mu, pm = Api(ctx.http, P + 'pol-mu', 'p'), Api(ctx.http, P + 'pol-pm', 'p')
    body = {'pattern': '^' + P + 'pol-tag', 'definition': {'max-length': 5}}
    st, _, _ = mu.call('GET', '/api/policies')
    expect(st == 200, 'management lists: %s' % st)
    st, _, out = mu.call('PUT', pol_path(P + 'pol-tag'), body)
    expect(st == 401 and out == {'error': 'not_authorised',
                                 'reason': 'User not authorised to access object'},
           'management PUT: %s %r' % (st, out))
    st, _, _ = pm.call('PUT', pol_path(P + 'pol-tag'), body)
    expect(st == 201, 'policymaker PUT: %s' % st)
    st, _, _ = mu.call('GET', pol_path(P + 'pol-tag'))
    expect(st == 401, 'management GET one: %s' % st)
    st, _, _ = pm.call('DELETE', pol_path(P + 'pol-tag'))
    expect(st == 204, 'policymaker DELETE: %s' % st)
    for user in (P + 'pol-mu', P + 'pol-pm'):
        ctx.api.status_of('DELETE', '/api/users/' + q(user))


def check_policy_applies_to_queues(ctx):
    """A policy's max-length trims a matching queue when set, the queue lists `policy` and
    `effective_policy_definition`; a lower x-max-length argument wins over the policy's; a
    higher priority policy replaces a lower one; clearing it lifts the limit; a queue declared
    after the policy gets it at once."""
    a, b = P + 'pol-q-a', P + 'pol-q-b'
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.queue_declare(a)
    ch.queue_declare(b, arguments={'x-max-length': 2})
    for i in range(10):
        ch.basic_publish('', a, b'a%d' % i)
        ch.basic_publish('', b, b'b%d' % i)
    eventually(lambda: queue_field(ctx.api, a, 'messages_ready') == 10, 'a has not 10 ready')
    defn = {'max-length': 4}
    st, _ = ctx.api.status_of('PUT', pol_path(P + 'pol-q-low'),
                              {'pattern': '^' + P + 'pol-q-', 'definition': defn, 'priority': 1,
                               'apply-to': 'queues'})
    expect(st == 201, 'PUT: %s' % st)
    eventually(lambda: queue_field(ctx.api, a, 'messages_ready') == 4, 'a not trimmed to 4')
    eventually(lambda: queue_field(ctx.api, a, 'policy') == P + 'pol-q-low', 'a policy field')
    expect(queue_field(ctx.api, a, 'effective_policy_definition') == defn,
           'effective_policy_definition %r' % queue_field(ctx.api, a, 'effective_policy_definition'))
    # The head was dropped: the oldest left is a6.
    m = ch.basic_get(a, auto_ack=False)
    expect(m[2] == b'a6', 'head after trim: %r' % (m[2],))
    ch.basic_nack(m[0].delivery_tag, requeue=True)
    eventually(lambda: queue_field(ctx.api, b, 'messages_ready') == 2, 'b not at its own 2')
    st, _ = ctx.api.status_of('PUT', pol_path(P + 'pol-q-high'),
                              {'pattern': '^' + P + 'pol-q-a', 'definition': {'max-length': 1},
                               'priority': 5})
    expect(st == 201, 'PUT high: %s' % st)
    eventually(lambda: queue_field(ctx.api, a, 'policy') == P + 'pol-q-high', 'a policy not high')
    eventually(lambda: queue_field(ctx.api, a, 'messages_ready') == 1, 'a not trimmed to 1')
    for n in ('pol-q-high', 'pol-q-low'):
        st, _ = ctx.api.status_of('DELETE', pol_path(P + n))
        expect(st == 204, 'DELETE %s: %s' % (n, st))
    eventually(lambda: queue_field(ctx.api, a, 'policy') is None, 'a policy not cleared')
    for i in range(5):
        ch.basic_publish('', a, b'again%d' % i)
    eventually(lambda: queue_field(ctx.api, a, 'messages_ready') == 6, 'a limited after clear')
    # Declared after the policy: limited at once.
    st, _ = ctx.api.status_of('PUT', pol_path(P + 'pol-q-new'),
                              {'pattern': '^' + P + 'pol-q-c$', 'definition': {'max-length': 2}})
    expect(st == 201, 'PUT new: %s' % st)
    c = P + 'pol-q-c'
    ch.queue_declare(c)
    for i in range(5):
        ch.basic_publish('', c, b'c%d' % i)
    eventually(lambda: queue_field(ctx.api, c, 'messages_ready') == 2, 'new queue not limited')
    eventually(lambda: queue_field(ctx.api, c, 'policy') == P + 'pol-q-new', 'new queue policy')
    ctx.api.status_of('DELETE', pol_path(P + 'pol-q-new'))
    for n in (a, b, c):
        ch.queue_delete(n)
    conn.close()


def check_policy_alternate_exchange(ctx):
    """A policy's alternate-exchange routes what a matching exchange routes nowhere; the
    exchange lists the policy; clearing it stops that."""
    x, ae, aq = P + 'pol-x', P + 'pol-ae', P + 'pol-aeq'
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.exchange_declare(x, 'direct')
    ch.exchange_declare(ae, 'fanout')
    ch.queue_declare(aq)
    ch.queue_bind(aq, ae, '')
    st, _ = ctx.api.status_of('PUT', pol_path(P + 'pol-x'),
                              {'pattern': '^' + P + 'pol-x$', 'apply-to': 'exchanges',
                               'definition': {'alternate-exchange': ae}})
    expect(st == 201, 'PUT: %s' % st)

    def exchange_policy():
        st, body = ctx.api.status_of('GET', '/api/exchanges/%2F/' + q(x))
        return body.get('policy') if st == 200 else None
    eventually(lambda: exchange_policy() == P + 'pol-x', 'exchange policy field')
    ch.basic_publish(x, 'nowhere', b'to-ae')
    eventually(lambda: queue_field(ctx.api, aq, 'messages_ready') == 1, 'not routed to the AE')
    ctx.api.status_of('DELETE', pol_path(P + 'pol-x'))
    eventually(lambda: exchange_policy() is None, 'exchange policy not cleared')
    ch.basic_publish(x, 'nowhere', b'dropped')
    ch.queue_declare(aq, passive=True)
    ch.basic_publish('', aq, b'marker')
    eventually(lambda: queue_field(ctx.api, aq, 'messages_ready') == 2, 'marker')
    for n in (aq,):
        ch.queue_delete(n)
    ch.exchange_delete(x)
    ch.exchange_delete(ae)
    conn.close()


def check_policy_definitions(ctx):
    """A policy is exported in GET /api/definitions' `policies` with RabbitMQ's fields, and
    a POST of definitions with a policy sets it."""
    body = {'pattern': '^' + P + 'pol-def', 'definition': {'message-ttl': 60000}, 'priority': 2,
            'apply-to': 'all'}
    ctx.api.status_of('PUT', pol_path(P + 'pol-def'), body)
    defs = ctx.api.get('/api/definitions')
    mine = [policy_fields(p) for p in defs.get('policies', []) if p.get('name') == P + 'pol-def']
    expect(mine == [dict(body, vhost='/', name=P + 'pol-def')], 'exported %r' % mine)
    ctx.api.status_of('DELETE', pol_path(P + 'pol-def'))
    doc = {'policies': [{'vhost': '/', 'name': P + 'pol-imp', 'pattern': '^' + P + 'pol-imp',
                         'apply-to': 'queues', 'definition': {'max-length': 7}, 'priority': 1}]}
    st, _ = ctx.api.status_of('POST', '/api/definitions', doc)
    expect(st in (200, 204), 'POST: %s' % st)
    got = policy_fields(ctx.api.get(pol_path(P + 'pol-imp')))
    expect(got == doc['policies'][0], 'imported %r' % got)
    ctx.api.status_of('DELETE', pol_path(P + 'pol-imp'))


def check_policy_unsupported_keys_refused(ctx):
    """Keys RabbitMQ accepts but coney cannot act on (ha-mode, queue-master-locator) are
    refused with 400 naming them, by the API and by a definitions import."""
    if ctx.api.get('/api/overview').get('product_name') != 'coney':
        raise Skipped('RabbitMQ acts on these keys')
    for key, val in (('ha-mode', 'all'), ('queue-master-locator', 'min-masters')):
        st, out = ctx.api.status_of('PUT', pol_path(P + 'pol-ha'),
                                    {'pattern': '.*', 'definition': {key: val}})
        expect(st == 400 and key in out.get('reason', '') and 'coney does not support'
               in out.get('reason', ''), '%s: %s %r' % (key, st, out))
    doc = {'policies': [{'vhost': '/', 'name': P + 'pol-ha', 'pattern': '.*',
                         'apply-to': 'all', 'definition': {'ha-mode': 'all'}, 'priority': 0}]}
    st, out = ctx.api.status_of('POST', '/api/definitions', doc)
    expect(st == 400 and 'ha-mode' in str(out), 'import: %s %r' % (st, out))
    st, _ = ctx.api.status_of('GET', pol_path(P + 'pol-ha'))
    expect(st == 404, 'refused policy exists: %s' % st)


# Policies beside the one changed in the 10,000-queue check, each matching every queue.
POLICIES_BESIDE = 20


def check_policy_on_10000_queues_keeps_amqp_responsive(ctx):
    """Setting and changing a policy that matches 10,000 queues, in a vhost with 20 other
    policies matching them too, keeps an AMQP canary's p99 round trip under 10 ms (coney
    applies policies to POLICY_OBJECTS_PER_TURN_MAX queues per loop turn), and every queue
    ends up with the highest-priority policy."""
    if ctx.api.get('/api/overview').get('product_name') != 'coney':
        raise Skipped('a bound of coney\'s single thread')
    conn = pika_conn(ctx)
    ch = conn.channel()
    names = [P + 'polbig-%05d' % i for i in range(BIG_QUEUES)]
    for n in names:
        ch.queue_declare(n)
    # Other policies of the vhost that match too: each queue weighs every one of them.
    for i in range(POLICIES_BESIDE):
        ctx.api.status_of('PUT', pol_path(P + 'pol-big-%02d' % i),
                          {'pattern': '^' + P + 'polbig-.*[0-9]{%d}' % (1 + i % 4), 'priority': i,
                           'definition': {'max-length': 1000 + i}})
    canary = pika_conn(ctx)
    cch = canary.channel()
    cch.queue_declare(P + 'pol-canary')

    def measure(first_round):
        """Five changes of the policy, each while the canary runs: (round trips, the longest
        round trip of each change)."""
        rtts, round_max = [], []
        for round_ in range(first_round, first_round + 5):
            # The PUT goes from another process, so the canary is already waiting when the
            # broker applies the policy (a stall then shows as one long round trip).
            putter = subprocess.Popen(
                [sys.executable, '-c', PUTTER, str(ctx.http), pol_path(P + 'pol-big'),
                 json.dumps({'pattern': '^' + P + 'polbig-', 'priority': 100,
                             'definition': {'max-length': 100 + round_, 'message-ttl': 60000}})],
                stdout=subprocess.PIPE, text=True)
            mine = []
            end = time.monotonic() + 1.0
            while time.monotonic() < end or putter.poll() is None:
                t0 = time.perf_counter()
                cch.queue_declare(P + 'pol-canary', passive=True)
                mine.append((time.perf_counter() - t0) * 1000)
                if time.monotonic() > end + 30:
                    break
            out, _ = putter.communicate(timeout=30)
            expect(out.strip() in ('201', '204'), 'PUT: %r' % out)
            rtts += mine
            round_max.append(max(mine))
        rtts.sort()
        p99 = rtts[int(len(rtts) * 0.99) - 1]
        median_max = sorted(round_max)[len(round_max) // 2]
        print('  policy over %d queues: %d canary round trips, p50 %.2f ms, p99 %.2f ms, max %.2f ms;'
              ' longest per change: %s ms'
              % (BIG_QUEUES, len(rtts), rtts[len(rtts) // 2], p99, rtts[-1],
                 ', '.join('%.1f' % m for m in round_max)), flush=True)
        return rtts, p99, median_max

    # As tests/hostile judges its loads: a cost the broker lets a client impose comes back on
    # every run, a 2-core machine's scheduler hiccup seldom hits two runs in a row; so a miss
    # is measured once more, and only two misses in a row fail.
    rtts, p99, median_max = measure(0)
    last = 104  # the max-length of the last change
    if p99 >= CANARY_P99_MS or median_max >= CANARY_P99_MS:
        print('  missed the bound once; measuring again', flush=True)
        rtts, p99, median_max = measure(5)
        last = 109

    def all_have_it():
        st, body = ctx.api.status_of('GET', '/api/queues/%2F?columns=name,effective_policy_definition')
        if st != 200:
            return False
        mine = [x for x in body if x['name'].startswith(P + 'polbig-')]
        return len(mine) == BIG_QUEUES and all(
            x.get('effective_policy_definition', {}).get('max-length') == last for x in mine)
    eventually(all_have_it, 'not every queue has the last policy')
    ctx.api.status_of('DELETE', pol_path(P + 'pol-big'))
    for i in range(POLICIES_BESIDE):
        ctx.api.status_of('DELETE', pol_path(P + 'pol-big-%02d' % i))
    for n in names:
        ch.queue_delete(n)
    cch.queue_delete(P + 'pol-canary')
    canary.close()
    conn.close()
    expect(len(rtts) >= 100, 'only %d canary round trips' % len(rtts))
    expect(p99 < CANARY_P99_MS, 'canary p99 %.2f ms >= %.1f ms' % (p99, CANARY_P99_MS))
    # Applying a change all at once stalls the canary once per change, which p99 over many
    # round trips hides; the median of each change's longest round trip does not.
    expect(median_max < CANARY_P99_MS, 'median of the longest round trip per change %.2f ms >= %.1f ms'
           % (median_max, CANARY_P99_MS))


# The putter process: PUT one policy, print the status.
PUTTER = '''
import base64, http.client, sys
port, path, body = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
c.request('PUT', path, body=body, headers={
    'Authorization': 'Basic ' + base64.b64encode(b'guest:guest').decode(),
    'Content-Type': 'application/json'})
print(c.getresponse().status, flush=True)
'''


# ---------------------------------------------------------------- node and health checks

NODE_FIELDS = {'name': str, 'type': str, 'running': bool, 'mem_used': int, 'mem_limit': int,
               'mem_alarm': bool, 'disk_free': int, 'disk_free_limit': int,
               'disk_free_alarm': bool, 'fd_used': int, 'fd_total': int, 'sockets_used': int,
               'sockets_total': int, 'uptime': int, 'processors': int, 'os_pid': str,
               'rates_mode': str, 'mem_calculation_strategy': str, 'partitions': list,
               'exchange_types': None, 'auth_mechanisms': list}


def check_nodes(ctx):
    """/api/nodes lists the node with RabbitMQ's field names and JSON types (the node of the
    overview, running, type disc, os_pid a string); /api/nodes/NAME answers the same node."""
    nodes = ctx.api.get('/api/nodes')
    expect(isinstance(nodes, list) and len(nodes) == 1, 'nodes %r' % (nodes,))
    n = nodes[0]
    for key, typ in NODE_FIELDS.items():
        if typ is None:
            continue
        expect(key in n, 'node lacks %s' % key)
        expect(isinstance(n[key], typ) and not (typ is int and isinstance(n[key], bool)),
               '%s is %r' % (key, n[key]))
    expect(n['name'] == ctx.api.get('/api/overview')['node'], 'name %r' % n['name'])
    expect(n['running'] is True and n['type'] == 'disc', 'running/type %r %r' % (n['running'], n['type']))
    expect(n['os_pid'].isdigit() and n['processors'] >= 1 and n['mem_used'] > 0
           and 0 < n['fd_used'] <= n['fd_total'] and n['uptime'] > 0, 'values %r' % n)
    one = ctx.api.get('/api/nodes/' + q(n['name']))
    expect(one['name'] == n['name'] and one['os_pid'] == n['os_pid'], 'one node %r' % one)


def check_health_one_node(ctx):
    """The one-node health checks answer as RabbitMQ's: virtual-hosts ok, quorum and
    mirror-sync critical ok (single node), a port or protocol with a listener ok, one
    without 503 naming it, a bad port 400, certificate expiry's unit check."""
    expect(ctx.api.get('/api/health/checks/virtual-hosts') == {'status': 'ok'}, 'virtual-hosts')
    for c in ('node-is-quorum-critical', 'node-is-mirror-sync-critical'):
        got = ctx.api.get('/api/health/checks/' + c)
        expect(got == {'status': 'ok', 'reason': 'single node cluster'}, '%s %r' % (c, got))
    got = ctx.api.get('/api/health/checks/port-listener/%d' % ctx.amqp)
    expect(got == {'status': 'ok', 'port': ctx.amqp}, 'port-listener %r' % got)
    st, out = ctx.api.status_of('GET', '/api/health/checks/port-listener/1')
    expect(st == 503 and out.get('status') == 'failed' and out.get('reason') == 'No active listener'
           and out.get('missing') == 1 and ctx.amqp in out.get('ports', []),
           'port-listener 1: %s %r' % (st, out))
    st, out = ctx.api.status_of('GET', '/api/health/checks/port-listener/abc')
    expect(st == 400 and out == {'error': 'bad_request', 'reason': 'Invalid port'}, 'abc: %s %r' % (st, out))
    for proto in ('amqp', 'amqp091'):
        got = ctx.api.get('/api/health/checks/protocol-listener/' + proto)
        expect(got == {'status': 'ok', 'protocol': 'amqp'}, '%s %r' % (proto, got))
    st, out = ctx.api.status_of('GET', '/api/health/checks/protocol-listener/mqtt')
    expect(st == 503 and out.get('missing') == 'mqtt' and 'amqp' in out.get('protocols', []),
           'mqtt: %s %r' % (st, out))
    st, out = ctx.api.status_of('GET', '/api/health/checks/certificate-expiration/1/foo')
    expect(st == 400 and out == {'error': 'bad_request', 'reason':
                                 'Time unit not recognised. Supported units: days, weeks, months, years.'},
           'cert unit: %s %r' % (st, out))
    expect(ctx.api.get('/api/health/checks/certificate-expiration/1/months') == {'status': 'ok'},
           'certificate-expiration without TLS')


def check_pypi_management_client(ctx):
    """amqpstorm's ManagementApi (a maintained client from PyPI, in its own virtualenv)
    declares, binds, publishes, gets, purges and deletes, and reads nodes and health, as
    against RabbitMQ (tests/mgmt/pypi_client.py)."""
    py = os.path.join(os.path.dirname(os.path.dirname(HERE)), '.venv', 'mgmt-client', 'bin', 'python')
    expect(os.path.exists(py), 'no %s: run scripts/pyenv.sh' % py)
    r = subprocess.run([py, os.path.join(HERE, 'pypi_client.py'), '--http', str(ctx.http)],
                       capture_output=True, text=True, timeout=120)
    expect(r.returncode == 0 and r.stdout.strip() == 'ok',
           'rc %s: %s %s' % (r.returncode, r.stdout.strip(), r.stderr.strip()[-300:]))


QUEUE_STATS_KEYS = ['ack', 'deliver', 'deliver_get', 'deliver_no_ack', 'get', 'get_empty',
                    'get_no_ack', 'publish', 'redeliver']


def check_object_message_stats(ctx):
    """A queue's message_stats count its publishes, gets (with and without ack), acks,
    redeliveries and get-empty with RabbitMQ's keys and `_details.rate`; an exchange's count
    publish_in and publish_out (one per queue reached); a queue nothing happened to has none."""
    name, x, q2 = P + 'ms-q', P + 'ms-x', P + 'ms-q2'
    conn = pika_conn(ctx)
    ch = conn.channel()
    ch.queue_declare(name)
    ch.queue_declare(q2)
    ch.queue_declare(P + 'ms-idle')
    ch.exchange_declare(x, 'fanout')
    ch.queue_bind(name, x)
    ch.queue_bind(q2, x)
    for _ in range(3):
        ch.basic_publish(x, '', b'x')
    ch.basic_publish('', name, b'y')
    m = ch.basic_get(name, auto_ack=False)
    ch.basic_nack(m[0].delivery_tag, requeue=True)
    m = ch.basic_get(name, auto_ack=False)
    ch.basic_ack(m[0].delivery_tag)
    ch.basic_get(name, auto_ack=True)
    want = {'publish': 4, 'get': 2, 'get_no_ack': 1, 'ack': 1, 'redeliver': 1,
            'deliver_get': 3, 'deliver': 0, 'deliver_no_ack': 0, 'get_empty': 0}

    def stats():
        return queue_field(ctx.api, name, 'message_stats') or {}
    got = eventually(lambda: (lambda s: s if all(s.get(k) == v for k, v in want.items()) else None)(stats()),
                     'queue message_stats != %r' % want)
    expect(sorted(k for k in got if not k.endswith('_details')) == QUEUE_STATS_KEYS, 'keys %r' % sorted(got))
    for k in QUEUE_STATS_KEYS:
        expect(isinstance(got[k + '_details'].get('rate'), float), '%s_details %r' % (k, got.get(k + '_details')))

    def xstats():
        st, body = ctx.api.status_of('GET', '/api/exchanges/%2F/' + q(x))
        return body.get('message_stats') if st == 200 else None
    got = eventually(lambda: (lambda s: s if s and s.get('publish_in') == 3 and s.get('publish_out') == 6 else None)(xstats()),
                     'exchange publish_in 3, publish_out 6')
    expect(isinstance(got['publish_in_details']['rate'], float), 'publish_in_details')
    expect(queue_field(ctx.api, P + 'ms-idle', 'message_stats') is None, 'idle queue has message_stats')
    for n in (name, q2, P + 'ms-idle'):
        ch.queue_delete(n)
    ch.exchange_delete(x)
    conn.close()


def check_connection_bytes(ctx):
    """A connection lists recv_oct, recv_cnt, send_oct and send_cnt (with recv_oct_details and
    send_oct_details rates) that grow with its traffic, and Prometheus' per-object endpoint
    has rabbitmq_connection_incoming_bytes_total for it."""
    from prometheus_client.parser import text_string_to_metric_families
    conn = pika_conn(ctx, name=P + 'bytes')
    ch = conn.channel()
    ch.queue_declare(P + 'bytes-q')
    for _ in range(10):
        ch.basic_publish('', P + 'bytes-q', b'x' * 1000)

    def mine():
        rows = [c for c in ctx.api.get('/api/connections')
                if c.get('client_properties', {}).get('connection_name') == P + 'bytes']
        return rows[0] if rows and rows[0].get('recv_oct', 0) >= 10000 else None
    c = eventually(mine, 'recv_oct under the 10 KB published')
    for k in ('recv_oct', 'recv_cnt', 'send_oct', 'send_cnt'):
        expect(isinstance(c.get(k), int) and c[k] > 0, '%s %r' % (k, c.get(k)))
    for k in ('recv_oct_details', 'send_oct_details'):
        expect(isinstance(c.get(k, {}).get('rate'), float), '%s %r' % (k, c.get(k)))

    def scraped():
        h = http.client.HTTPConnection(HOST, ctx.prometheus, timeout=30)
        h.request('GET', '/metrics/per-object')
        body = h.getresponse().read().decode()
        h.close()
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        fam = fams.get('rabbitmq_connection_incoming_bytes')
        return fam and any(s.value >= 10000 and 'channel' in s.labels for s in fam.samples)
    eventually(scraped, 'per-object rabbitmq_connection_incoming_bytes_total')
    ch.queue_delete(P + 'bytes-q')
    conn.close()



CHANNEL_PUBLISH_KEYS = ['confirm', 'drop_unroutable', 'publish', 'return_unroutable']
CHANNEL_DELIVER_KEYS = ['ack', 'deliver', 'deliver_get', 'deliver_no_ack', 'get', 'get_empty',
                        'get_no_ack', 'redeliver']


def my_channels(ctx, conn_name):
    """This test's connection's channels by number (once the connection is listed)."""
    conns = [c for c in ctx.api.get('/api/connections')
             if c.get('client_properties', {}).get('connection_name') == conn_name]
    if not conns:
        return {}
    return {c['number']: c for c in ctx.api.get('/api/channels')
            if c.get('connection_details', {}).get('name') == conns[0]['name']}


def check_channel_message_stats(ctx):
    """Each channel's message_stats count what happened on it: a confirm-mode publisher's
    publish, confirm, return_unroutable (mandatory) and drop_unroutable; a consumer channel's
    deliver, get, get_no_ack, ack (nack and reject are not acks), redeliver and deliver_get; a
    no-ack consumer's deliver_no_ack; each key with `_details.rate`, the publish keys only on
    a channel that published, the delivery keys only on one that received, none on an idle
    channel. GET /api/channels/NAME shows the same with consumer_details; unknown is 404,
    another user's 401 for a management user."""
    import pika
    name, cname = P + 'chs-q', P + 'chs'
    conn = pika_conn(ctx, name=cname)
    pub = conn.channel()
    pub.confirm_delivery()
    pub.queue_declare(name)
    for _ in range(3):
        pub.basic_publish('', name, b'x')
    try:
        pub.basic_publish('amq.direct', P + 'nowhere', b'y', mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    pub.basic_publish('amq.direct', P + 'nowhere', b'z')
    sub = conn.channel()
    m = sub.basic_get(name, auto_ack=False)
    sub.basic_ack(m[0].delivery_tag)
    sub.basic_get(name, auto_ack=True)
    m = sub.basic_get(name, auto_ack=False)
    sub.basic_nack(m[0].delivery_tag, requeue=True)
    m = sub.basic_get(name, auto_ack=False)
    sub.basic_reject(m[0].delivery_tag, requeue=True)
    acked = []

    def on_message(c, d, p, b):
        c.basic_ack(d.delivery_tag)
        acked.append(d.redelivered)
    sub.basic_consume(name, on_message, consumer_tag=P + 'chs-c')
    noack = conn.channel()
    eventually(lambda: conn.process_data_events(time_limit=0.05) or acked, 'the requeued message consumed')
    noack.basic_consume(name, lambda *a: None, auto_ack=True)
    sub.basic_cancel(P + 'chs-c')
    pub.basic_publish('', name, b'w')
    idle = conn.channel()
    want = {
        pub.channel_number: {'publish': 6, 'confirm': 6, 'return_unroutable': 1, 'drop_unroutable': 1},
        sub.channel_number: {'ack': 2, 'deliver': 1, 'get': 3, 'get_no_ack': 1, 'redeliver': 2,
                             'deliver_get': 5, 'deliver_no_ack': 0, 'get_empty': 0},
        noack.channel_number: {'deliver_no_ack': 1, 'deliver_get': 1, 'ack': 0},
    }

    def matches():
        conn.process_data_events(time_limit=0)
        chans = my_channels(ctx, cname)
        ok = all(all(chans.get(n, {}).get('message_stats', {}).get(k) == v for k, v in w.items())
                 for n, w in want.items())
        return chans if ok and idle.channel_number in chans else None
    chans = eventually(matches, 'channel message_stats != %r' % want)
    keys = lambda n: sorted(k for k in chans[n]['message_stats'] if not k.endswith('_details'))
    expect(keys(pub.channel_number) == CHANNEL_PUBLISH_KEYS, 'publisher keys %r' % keys(pub.channel_number))
    expect(keys(sub.channel_number) == CHANNEL_DELIVER_KEYS, 'consumer keys %r' % keys(sub.channel_number))
    expect(keys(noack.channel_number) == CHANNEL_DELIVER_KEYS, 'no-ack keys %r' % keys(noack.channel_number))
    for n in (pub.channel_number, sub.channel_number):
        for k, v in chans[n]['message_stats'].items():
            expect(not k.endswith('_details') or isinstance(v.get('rate'), float), '%s %r' % (k, v))
    expect('message_stats' not in chans[idle.channel_number], 'idle channel %r' % chans[idle.channel_number])
    c = chans[pub.channel_number]
    expect(c.get('messages_unconfirmed') == 0 and c.get('messages_uncommitted') == 0
           and c.get('acks_uncommitted') == 0, 'publisher channel %r' % c)
    one = ctx.api.get('/api/channels/' + q(chans[noack.channel_number]['name']))
    expect(one.get('message_stats', {}).get('deliver_no_ack') == 1, 'one channel %r' % one)
    details = one.get('consumer_details')
    expect(isinstance(details, list) and len(details) == 1
           and details[0].get('queue') == {'name': name, 'vhost': '/'}
           and details[0].get('ack_required') is False, 'consumer_details %r' % details)
    expect(one.get('deliveries') == [] and one.get('publishes') == [], 'deliveries/publishes %r' % one)
    st, _ = ctx.api.status_of('GET', '/api/channels/' + q('127.0.0.1:1 -> 127.0.0.1:2 (1)'))
    expect(st == 404, 'unknown channel: %s' % st)
    other = P + 'chs-mgr'
    ctx.api.status_of('PUT', '/api/users/' + q(other), {'password': 'pw', 'tags': 'management'})
    st, got = Api(ctx.http, other, 'pw').status_of('GET', '/api/channels/' + q(chans[pub.channel_number]['name']))
    expect(st == 401 and got.get('reason') == 'User not authorised to access object',
           "another user's channel: %s %r" % (st, got))
    ctx.api.status_of('DELETE', '/api/users/' + q(other))
    pub.queue_delete(name)
    conn.close()


def check_channel_uncommitted(ctx):
    """A transactional channel shows its publishes and acks held until tx.commit
    (messages_uncommitted, acks_uncommitted, counting the deliveries a multiple ack covers),
    and its message_stats count them only once committed."""
    name, cname = P + 'tx-q', P + 'tx'
    conn = pika_conn(ctx, name=cname)
    ch = conn.channel()
    ch.queue_declare(name)
    for _ in range(3):
        ch.basic_publish('', name, b'x')
    tags = [ch.basic_get(name, auto_ack=False)[0].delivery_tag for _ in range(3)]
    ch.tx_select()
    ch.basic_publish('', name, b'y')
    ch.basic_publish('', name, b'y')
    ch.basic_ack(tags[1], multiple=True)

    def held():
        c = my_channels(ctx, cname).get(ch.channel_number)
        return c if c and c.get('messages_uncommitted') == 2 and c.get('acks_uncommitted') == 2 \
            and c.get('message_stats', {}).get('publish') == 3 else None
    c = eventually(held, 'messages_uncommitted 2, acks_uncommitted 2, publish 3')
    expect(c['message_stats'].get('ack') == 0 and c.get('transactional') is True, 'channel %r' % c)
    ch.tx_commit()

    def committed():
        c = my_channels(ctx, cname).get(ch.channel_number)
        ms = (c or {}).get('message_stats', {})
        return c if c.get('messages_uncommitted') == 0 and c.get('acks_uncommitted') == 0 \
            and ms.get('publish') == 5 and ms.get('ack') == 2 else None
    eventually(committed, 'after commit: publish 5, ack 2, nothing uncommitted')
    ch.queue_delete(name)
    conn.close()


def check_channel_rates(ctx):
    """A channel publishing steadily shows a publish rate above 0 (its consumer channel a
    deliver rate), and once it stops the rates fall back to 0 though nothing more happens on
    the channel."""
    name, cname = P + 'rate-q', P + 'rate'
    conn = pika_conn(ctx, name=cname)
    pub = conn.channel()
    pub.queue_declare(name)
    sub = conn.channel()
    sub.basic_consume(name, lambda *a: None, auto_ack=True)
    rates = {}

    def rate(n, key):
        c = my_channels(ctx, cname).get(n, {})
        return c.get('message_stats', {}).get(key + '_details', {}).get('rate', 0.0)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for _ in range(50):
            pub.basic_publish('', name, b'r')
        conn.process_data_events(time_limit=0.1)
        rates = {'publish': rate(pub.channel_number, 'publish'),
                 'deliver_no_ack': rate(sub.channel_number, 'deliver_no_ack')}
        if all(r > 0 for r in rates.values()):
            break
    expect(all(r > 0 for r in rates.values()), 'rates while publishing %r' % rates)

    def quiet():
        conn.process_data_events(time_limit=0)
        now = (rate(pub.channel_number, 'publish'), rate(sub.channel_number, 'deliver_no_ack'))
        return now == (0.0, 0.0)
    eventually(quiet, 'rates back to 0 once idle')
    pub.queue_delete(name)
    conn.close()


def check_permissions_missing_vhost_or_user(ctx):
    """PUT /api/permissions on a vhost or user that does not exist is RabbitMQ 3.10's 400
    vhost_or_user_not_found (both), DELETE of it 404, and a missing user's or vhost's
    permission listing 404."""
    user, vh = P + 'perm-user', P + 'perm-vh'
    st, _ = ctx.api.status_of('PUT', '/api/users/' + q(user), {'password': 'x', 'tags': ''})
    expect(st in (201, 204), 'user PUT: %s' % st)
    body = {'configure': '.*', 'write': '.*', 'read': '.*'}
    for path in ('/api/permissions/%s/%s' % (q(P + 'no-vh'), q(user)),
                 '/api/permissions/%2F/' + q(P + 'no-user')):
        st, got = ctx.api.status_of('PUT', path, body)
        expect(st == 400 and got == {'error': 'bad_request', 'reason': 'vhost_or_user_not_found'},
               'PUT %s: %s %r' % (path, st, got))
    st, _ = ctx.api.status_of('DELETE', '/api/permissions/%s/%s' % (q(P + 'no-vh'), q(user)))
    expect(st == 404, 'DELETE on a missing vhost: %s' % st)
    for path in ('/api/users/%s/permissions' % q(P + 'no-user'),
                 '/api/vhosts/%s/permissions' % q(P + 'no-vh')):
        st, _ = ctx.api.status_of('GET', path)
        expect(st == 404, 'GET %s: %s' % (path, st))
    ctx.api.status_of('DELETE', '/api/users/' + q(user))



def check_topic_permissions(ctx):
    """/api/topic-permissions as RabbitMQ 3.10: PUT 201 for the user's first in the vhost, 204
    after (per user and vhost, not per exchange); the listings (all, one user and vhost, the
    user's, the vhost's) show them; missing keys are 400 `[{key_missing,K}]`; a missing user
    or vhost 400 vhost_or_user_not_found on PUT and 404 on GET; DELETE removes all of the
    user's in the vhost (then 404). And they act: a publish to amq.topic whose key the write
    pattern refuses closes the channel with 403."""
    user = P + 'topic-user'
    st, _ = ctx.api.status_of('PUT', '/api/users/' + q(user), {'password': 'pw', 'tags': ''})
    expect(st in (201, 204), 'user PUT: %s' % st)
    st, _ = ctx.api.status_of('PUT', '/api/permissions/%2F/' + q(user),
                              {'configure': '.*', 'write': '.*', 'read': '.*'})
    expect(st in (201, 204), 'permissions PUT: %s' % st)
    one = '/api/topic-permissions/%2F/' + q(user)
    st, _ = ctx.api.status_of('GET', one)
    expect(st == 404, 'GET before any: %s' % st)
    answers = [ctx.api.status_of('PUT', one, b)[0] for b in (
        {'exchange': 'amq.topic', 'write': '^allowed\\.', 'read': '.*'},
        {'exchange': P + 'x2', 'write': '^b', 'read': ''},
        {'exchange': P + 'x2', 'write': '^c', 'read': ''})]
    expect(answers == [201, 204, 204], 'PUT statuses %r' % answers)

    def mine(rows):
        return sorted((r['user'], r['vhost'], r['exchange'], r['write'], r['read'])
                      for r in rows if r['user'] == user)
    want = [(user, '/', P + 'x2', '^c', ''), (user, '/', 'amq.topic', '^allowed\\.', '.*')]
    for path in ('/api/topic-permissions', one, '/api/users/%s/topic-permissions' % q(user),
                 '/api/vhosts/%2F/topic-permissions'):
        got = mine(ctx.api.get(path))
        expect(got == sorted(want), 'GET %s: %r' % (path, got))
    for body, reason in (({'write': '', 'read': ''}, '[{key_missing,exchange}]'),
                         ({'exchange': 'amq.topic'}, '[{key_missing,write},{key_missing,read}]')):
        st, got = ctx.api.status_of('PUT', one, body)
        expect(st == 400 and got == {'error': 'bad_request', 'reason': reason},
               'PUT %r: %s %r' % (body, st, got))
    for path in ('/api/topic-permissions/%s/%s' % (q(P + 'no-vh'), q(user)),
                 '/api/topic-permissions/%2F/' + q(P + 'no-user')):
        st, got = ctx.api.status_of('PUT', path, {'exchange': 'amq.topic', 'write': '', 'read': ''})
        expect(st == 400 and got == {'error': 'bad_request', 'reason': 'vhost_or_user_not_found'},
               'PUT %s: %s %r' % (path, st, got))
        st, _ = ctx.api.status_of('GET', path)
        expect(st == 404, 'GET %s: %s' % (path, st))
    import pika
    c = brokerlib.pika_connect(ctx.amqp, credentials=pika.PlainCredentials(user, 'pw'))
    try:
        ch = c.channel()
        ch.basic_publish('amq.topic', 'allowed.key', b'ok')
        ch.queue_declare('', exclusive=True)  # a round trip: the allowed publish kept it open
        ch.basic_publish('amq.topic', 'refused.key', b'no')
        # The broker handles the publish before this declare, so the declare's answer is the
        # channel.close of the refusal.
        try:
            ch.queue_declare('', exclusive=True)
            expect(False, 'a publish with a refused key left the channel open')
        except pika.exceptions.ChannelClosedByBroker as e:
            expect(brokerlib.reply_code(e) == 403, 'closed with %r' % (e,))
    finally:
        if c.is_open:
            c.close()
    st, _ = ctx.api.status_of('DELETE', one)
    expect(st == 204, 'DELETE: %s' % st)
    st, _ = ctx.api.status_of('DELETE', one)
    expect(st == 404, 'DELETE again: %s' % st)
    expect(mine(ctx.api.get('/api/topic-permissions')) == [], 'left after DELETE')
    ctx.api.status_of('DELETE', '/api/users/' + q(user))


def check_limits_api(ctx):
    """/api/vhost-limits and /api/user-limits as RabbitMQ 3.10: PUT {"value": N} is 204
    (new or not), the listings show the vhost's or user's limits, RabbitMQ's 400 texts for an
    unknown limit, a value that is not a number and a missing value; a missing vhost 404 on
    PUT; DELETE 204 (set or not). And they act: with max-queues 1, a second queue.declare in
    the vhost is refused with 406; with max-channels 1, a second channel.open closes the
    connection."""
    import pika
    vh, user = P + 'limits-vh', P + 'limits-user'
    expect(ctx.api.status_of('PUT', '/api/vhosts/' + q(vh))[0] in (201, 204), 'vhost PUT')
    expect(ctx.api.status_of('PUT', '/api/users/' + q(user), {'password': 'pw', 'tags': ''})[0]
           in (201, 204), 'user PUT')
    for v in (vh, '/'):
        ctx.api.status_of('PUT', '/api/permissions/%s/%s' % (q(v), q(user)),
                          {'configure': '.*', 'write': '.*', 'read': '.*'})
    vl, ul = '/api/vhost-limits/%s/' % q(vh), '/api/user-limits/%s/' % q(user)
    statuses = [ctx.api.status_of('PUT', vl + 'max-connections', {'value': 10})[0],
                ctx.api.status_of('PUT', vl + 'max-connections', {'value': 11})[0],
                ctx.api.status_of('PUT', vl + 'max-queues', {'value': 1})[0],
                ctx.api.status_of('PUT', ul + 'max-channels', {'value': 1})[0],
                ctx.api.status_of('PUT', ul + 'max-connections', {'value': 5})[0]]
    expect(statuses == [204] * 5, 'PUT statuses %r' % statuses)
    rows = [r for r in ctx.api.get('/api/vhost-limits') if r['vhost'] == vh]
    expect(rows == [{'vhost': vh, 'value': {'max-connections': 11, 'max-queues': 1}}],
           'vhost-limits: %r' % rows)
    expect(ctx.api.get('/api/vhost-limits/' + q(vh)) == rows, 'one vhost')
    rows = [r for r in ctx.api.get('/api/user-limits') if r['user'] == user]
    expect(rows == [{'user': user, 'value': {'max-channels': 1, 'max-connections': 5}}],
           'user-limits: %r' % rows)
    expect(ctx.api.get('/api/user-limits/' + q(user)) == rows, 'one user')
    for path, body, want in (
            (vl + 'max-bogus', {'value': 5},
             'Validation failed\n\nUnrecognised terms [{<<"max-bogus">>,5}] in limits\n'),
            (vl + 'max-queues', {'value': 'x'},
             'Validation failed\n\nmax-queues should be a number, actually was <<"x">>\n'),
            (vl + 'max-queues', {}, '[{key_missing,value}]'),
            (ul + 'max-bogus', {'value': 5}, 'Unrecognised terms [{<<"max-bogus">>,5}] in user-limits'),
            (ul + 'max-channels', {'value': 'x'}, 'max-channels should be a number, actually was <<"x">>')):
        st, got = ctx.api.status_of('PUT', path, body)
        expect(st == 400 and got == {'error': 'bad_request', 'reason': want},
               'PUT %s %r: %s %r' % (path, body, st, got))
    st, got = ctx.api.status_of('PUT', '/api/vhost-limits/%s/max-queues' % q(P + 'no-vh'), {'value': 1})
    expect(st == 404 and got == {'error': 'not_found', 'reason': 'vhost_not_found'},
           'missing vhost: %s %r' % (st, got))
    for path in ('/api/vhost-limits/' + q(P + 'no-vh'), '/api/user-limits/' + q(P + 'no-user')):
        expect(ctx.api.status_of('GET', path)[0] == 404, 'GET %s' % path)
    def connect():
        return brokerlib.pika_connect(ctx.amqp, credentials=pika.PlainCredentials(user, 'pw'),
                                      virtual_host=vh)
    c = connect()
    try:
        c.channel()
        try:
            c.channel()
            expect(False, 'a second channel for a user with max-channels 1')
        except (pika.exceptions.ConnectionClosedByBroker, pika.exceptions.ChannelClosedByBroker) as e:
            expect(brokerlib.reply_code(e) in (406, 530), 'closed with %r' % (e,))
    finally:
        if c.is_open:
            c.close()
    c = connect()
    try:
        ch = c.channel()
        ch.queue_declare(P + 'limit-q1')
        try:
            ch.queue_declare(P + 'limit-q2')
            expect(False, 'a second queue in a vhost with max-queues 1')
        except pika.exceptions.ChannelClosedByBroker as e:
            expect(brokerlib.reply_code(e) == 406, 'closed with %r' % (e,))
    finally:
        if c.is_open:
            c.close()
    dels = [ctx.api.status_of('DELETE', vl + 'max-queues')[0],
            ctx.api.status_of('DELETE', vl + 'max-queues')[0],
            ctx.api.status_of('DELETE', vl + 'max-connections')[0],
            ctx.api.status_of('DELETE', ul + 'max-channels')[0],
            ctx.api.status_of('DELETE', ul + 'max-connections')[0]]
    expect(dels == [204] * 5, 'DELETE statuses %r' % dels)
    expect(ctx.api.get('/api/vhost-limits/' + q(vh)) == [], 'vhost limits left')
    expect(ctx.api.get('/api/user-limits/' + q(user)) == [], 'user limits left')
    ctx.api.status_of('DELETE', '/api/vhosts/' + q(vh))
    ctx.api.status_of('DELETE', '/api/users/' + q(user))


def check_small_endpoints(ctx):
    """/api/auth answers without credentials with RabbitMQ 3.10's OAuth-off object;
    /api/users/without-permissions lists a user that has none (and not one that has);
    /api/healthchecks/node/NODE is ok for the broker's own node, 404 for another;
    /api/connections/username/U lists U's connections and DELETE closes them all (204)."""
    st, _, body = ctx.api.call('GET', '/api/auth', auth=False)
    expect(st == 200 and body == {'enable_uaa': False, 'uaa_client_id': '', 'uaa_location': ''},
           '/api/auth: %s %r' % (st, body))
    lone, busy = P + 'lone', P + 'busy'
    for u in (lone, busy):
        st, _ = ctx.api.status_of('PUT', '/api/users/' + q(u), {'password': 'pw', 'tags': ''})
        expect(st in (201, 204), 'user PUT: %s' % st)
    ctx.api.status_of('PUT', '/api/permissions/%2F/' + q(busy),
                      {'configure': '.*', 'write': '.*', 'read': '.*'})
    rows = ctx.api.get('/api/users/without-permissions')
    names = [r['name'] for r in rows]
    expect(lone in names and busy not in names, 'without-permissions: %r' % names)
    expect(set(rows[names.index(lone)]) >= {'name', 'password_hash', 'hashing_algorithm', 'tags'},
           'row %r' % rows[names.index(lone)])
    node = ctx.api.get('/api/overview')['node']
    expect(ctx.api.get('/api/healthchecks/node/' + q(node)) == {'status': 'ok'}, 'own node')
    st, _ = ctx.api.status_of('GET', '/api/healthchecks/node/nobody%40nowhere')
    expect(st == 404, 'other node: %s' % st)
    import pika
    conns = [brokerlib.pika_connect(ctx.amqp, credentials=pika.PlainCredentials(busy, 'pw'))
             for _ in range(2)]
    try:
        got = eventually(lambda: (lambda r: r if len(r) == 2 else None)(
            ctx.api.get('/api/connections/username/' + q(busy))), 'two connections of the user')
        expect(all(r['user'] == busy for r in got), 'rows %r' % got)
        expect(ctx.api.get('/api/connections/username/' + q(P + 'nobody')) == [], 'nobody')
        st, _ = ctx.api.status_of('DELETE', '/api/connections/username/' + q(busy))
        expect(st == 204, 'DELETE: %s' % st)
        for c in conns:
            def gone(c=c):
                try:
                    c.process_data_events(time_limit=0.1)
                except pika.exceptions.ConnectionClosedByBroker as e:
                    return brokerlib.reply_code(e) == 320
                return False
            eventually(gone, 'connection closed with 320 by the DELETE')
    except Exception:
        for c in conns:
            if c.is_open:
                c.close()
        raise
    for u in (lone, busy):
        ctx.api.status_of('DELETE', '/api/users/' + q(u))


def check_node_memory(ctx):
    """GET /api/nodes/NAME/memory is RabbitMQ's {"memory": {...}} with strategy rss, total.rss
    and total.allocated (bytes, non-zero), code (the resident code) not above the RSS, every
    figure a non-negative integer; another node name is 404."""
    node = ctx.api.get('/api/overview')['node']
    mem = ctx.api.get('/api/nodes/%s/memory' % q(node)).get('memory')
    expect(isinstance(mem, dict) and mem.get('strategy') == 'rss', 'memory %r' % mem)
    total = mem.get('total', {})
    for k in ('rss', 'allocated'):
        expect(isinstance(total.get(k), int) and total[k] > 0, 'total.%s %r' % (k, total))
    expect(isinstance(mem.get('code'), int) and 0 < mem['code'] <= total['rss'], 'code %r' % mem)
    for k, v in mem.items():
        expect(k in ('strategy', 'total') or (isinstance(v, int) and v >= 0), '%s %r' % (k, v))
    st, _ = ctx.api.status_of('GET', '/api/nodes/%s/memory' % q('nosuch@nowhere'))
    expect(st == 404, 'another node: %s' % st)



TLS_FIELDS = ['peer_cert_issuer', 'peer_cert_subject', 'peer_cert_validity', 'ssl_cipher',
              'ssl_hash', 'ssl_key_exchange', 'ssl_protocol']


def check_connection_fields(ctx):
    """A plain PLAIN connection shows auth_mechanism PLAIN, user_provided_name (its
    connection_name), ssl false and the TLS and peer-certificate fields null in the listing
    but "" in GET /api/connections/NAME, as RabbitMQ 3.10 renders them."""
    cname = P + 'fields'
    conn = pika_conn(ctx, name=cname)
    conn.channel()

    def mine():
        conn.process_data_events(time_limit=0)
        rows = [c for c in ctx.api.get('/api/connections')
                if c.get('client_properties', {}).get('connection_name') == cname and 'channels' in c]
        return rows[0] if rows else None
    c = eventually(mine, 'connection not listed')
    expect(c.get('auth_mechanism') == 'PLAIN' and c.get('user_provided_name') == cname
           and c.get('ssl') is False, 'connection %r' % c)
    expect(all(k in c and c[k] is None for k in TLS_FIELDS), 'listing TLS fields %r' % c)
    one = ctx.api.get('/api/connections/' + q(c['name']))
    expect(all(one.get(k) == '' for k in TLS_FIELDS), 'one connection TLS fields %r' % one)
    expect(one.get('user_provided_name') == cname, 'one connection %r' % one)
    conn.close()



def check_prometheus_channels(ctx):
    """The channel families cover the channels open now, as rabbitmq_prometheus: a confirm-mode
    publisher and an unacking consumer (channel-wide prefetch 7) show in the summed counters (published,
    confirmed, delivered_ack) and gauges (messages_unacked, prefetch), in /metrics/per-object
    as gauges under a `channel` label, and their counts leave the sums when the channels
    close."""
    from prometheus_client.parser import text_string_to_metric_families
    name = P + 'prom-ch'

    def scrape(path):
        c = http.client.HTTPConnection(HOST, ctx.prometheus, timeout=30)
        c.request('GET', path)
        body = c.getresponse().read().decode()
        c.close()
        fams = {}
        for f in text_string_to_metric_families(body):
            for smp in f.samples:
                fams.setdefault(smp.name, []).append((smp.labels, smp.value))
        return fams

    def total(fams, metric):
        return sum(v for _, v in fams.get(metric, []))
    conn = pika_conn(ctx)
    pub = conn.channel()
    pub.confirm_delivery()
    pub.queue_declare(name)
    pub.queue_purge(name)
    for _ in range(3):
        pub.basic_publish('', name, b'p')
    sub = conn.channel()
    sub.basic_qos(prefetch_count=7, global_qos=True)
    sub.basic_consume(name, lambda *a: None)
    want = {'rabbitmq_channel_messages_published_total': 3,
            'rabbitmq_channel_messages_confirmed_total': 3,
            'rabbitmq_channel_messages_delivered_ack_total': 3,
            'rabbitmq_channel_messages_unacked': 3, 'rabbitmq_channel_prefetch': 7}

    def summed():
        conn.process_data_events(time_limit=0)
        fams = scrape('/metrics')
        return fams if all(total(fams, k) >= v for k, v in want.items()) else None
    fams = eventually(summed, 'summed channel families >= %r' % want)
    published = total(fams, 'rabbitmq_channel_messages_published_total')

    def labelled():
        conn.process_data_events(time_limit=0)
        fams = scrape('/metrics/per-object')
        ok = lambda m, v: any('channel' in l and x == v for l, x in fams.get(m, []))
        return ok('rabbitmq_channel_prefetch', 7) and ok('rabbitmq_channel_messages_unacked', 3)
    eventually(labelled, 'per-object channel gauges (prefetch 7, unacked 3)')
    pub.queue_delete(name)
    conn.close()
    eventually(lambda: total(scrape('/metrics'), 'rabbitmq_channel_messages_published_total') <= published - 3,
               'published_total still counts the closed channels')


class Skipped(Exception):
    """The check does not apply to this broker (printed as SKIP, counted as neither)."""


CHECKS = [(n[len('check_'):], f) for n, f in sorted(globals().items()) if n.startswith('check_')]


class Ctx:
    def __init__(self, args):
        self.amqp, self.http, self.prometheus = args.amqp, args.http, args.prometheus
        self.api = Api(args.http)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--amqp', type=int, required=True)
    ap.add_argument('--http', type=int, required=True)
    ap.add_argument('--prometheus', type=int, required=True)
    ap.add_argument('--only', action='append', default=[])
    ap.add_argument('--list', action='store_true')
    args = ap.parse_args()
    if args.list:
        print('\n'.join(n for n, _ in CHECKS))
        return 0
    ctx = Ctx(args)
    failed = passed = 0
    for name, fn in CHECKS:
        if args.only and name not in args.only:
            continue
        try:
            fn(ctx)
            passed += 1
            print('PASS %s' % name, flush=True)
        except Skipped as e:
            print('SKIP %s: %s' % (name, e), flush=True)
        except Exception as e:  # a check's failure, or a client error it did not expect
            failed += 1
            reason = str(e) if isinstance(e, CheckFailed) else traceback.format_exc().strip().splitlines()[-1]
            print('FAIL %s: %s' % (name, reason), flush=True)
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
