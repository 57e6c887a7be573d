"""TLS (amqps) tests against coney, with independent clients: pika over Python's ssl module,
`openssl s_client`, and raw sockets. Generates a throw-away CA, server and client certificates
with the openssl command into a temp dir (no key is ever committed), starts coney with
RabbitMQ's `listeners.ssl.default` / `ssl_options.*` keys, and prints `N passed, M failed`
as its last line.

    .venv/pika1/bin/python tests/tls/run.py --coney target/release/coney [--only NAME]
    .venv/pika1/bin/python tests/tls/run.py --rabbitmq     (the same tests against RabbitMQ
                                                            3.10, to prove them faithful)
"""
import argparse
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'lib'))
import brokerlib  # noqa: E402
from brokerlib import HOST, Coney, free_port  # noqa: E402

import pika  # noqa: E402

PROTOCOL_HEADER = b'AMQP\x00\x00\x09\x01'
# connection.start: frame type 1, channel 0, then (after the size) class 10 method 10.
START_PREFIX = b'\x01\x00\x00'
START_METHOD = b'\x00\x0a\x00\x0a'
# Handshake deadline of the brokers started here (ms), short so the slowloris test is quick.
HANDSHAKE_TIMEOUT_MS = 2000


def sh(*argv):
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


class Pki:
    """A test CA, a server certificate for localhost/127.0.0.1, a client certificate signed by
    the CA, and a client certificate signed by another ("rogue") CA. EC P-256 keys: quick."""

    def __init__(self, d):
        self.d = d
        self.ca, self.ca_key = self._ca('ca', 'coney test CA')
        self.rogue_ca, self.rogue_key = self._ca('rogue', 'rogue CA')
        self.server, self.server_key = self._leaf(
            'server', 'localhost', self.ca, self.ca_key,
            'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
        self.client, self.client_key = self._leaf(
            'client', 'guest', self.ca, self.ca_key, 'extendedKeyUsage=clientAuth\n')
        self.rogue_client, self.rogue_client_key = self._leaf(
            'rogue-client', 'guest', self.rogue_ca, self.rogue_key,
            'extendedKeyUsage=clientAuth\n')
        # SASL EXTERNAL: a certificate whose subject names a user, and one naming nobody.
        self.ext_user, self.ext_user_key = self._leaf(
            'ext-user', 'tls-user/O=coney test', self.ca, self.ca_key,
            'extendedKeyUsage=clientAuth\n')
        self.ext_nobody, self.ext_nobody_key = self._leaf(
            'ext-nobody', 'nobody/O=coney test', self.ca, self.ca_key,
            'extendedKeyUsage=clientAuth\n')
        self.garbage = self.path('garbage.pem')
        with open(self.garbage, 'w') as f:
            f.write('-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n')

    def path(self, name):
        return os.path.join(self.d, name)

    def _key(self, name):
        key = self.path(name + '.key')
        sh('openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
           '-out', key)
        return key

    def _ca(self, name, cn):
        key = self._key(name)
        cert = self.path(name + '.pem')
        sh('openssl', 'req', '-x509', '-new', '-key', key, '-out', cert, '-days', '2',
           '-subj', '/CN=' + cn, '-addext', 'basicConstraints=critical,CA:TRUE',
           '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
        return cert, key

    def _leaf(self, name, cn, ca, ca_key, ext):
        key = self._key(name)
        csr, cert, extfile = (self.path(name + s) for s in ('.csr', '.pem', '.ext'))
        with open(extfile, 'w') as f:
            f.write('basicConstraints=CA:FALSE\n' + ext)
        sh('openssl', 'req', '-new', '-key', key, '-out', csr, '-subj', '/CN=' + cn)
        sh('openssl', 'x509', '-req', '-in', csr, '-CA', ca, '-CAkey', ca_key,
           '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extfile)
        return cert, key


# The user RabbitMQ's ssl_cert_login_from = distinguished_name makes of ext-user's subject
# (/CN=tls-user/O=coney test): RDNs reversed, RFC 4514 style.
EXT_DN_USER = 'O=coney test,CN=tls-user'
EXT_FAILED = ('close 403 ACCESS_REFUSED - Login was refused using authentication mechanism '
              'EXTERNAL. For details see the broker logfile.')


def tls_conf(tls_port, pki, extra):
    """The rabbitmq.conf lines both brokers read for the TLS listener."""
    return ('listeners.ssl.default = %s:%d\n' % (HOST, tls_port)
            + 'ssl_options.certfile = %s\n' % pki.server
            + 'ssl_options.keyfile = %s\n' % pki.server_key
            + 'ssl_options.cacertfile = %s\n' % pki.ca + extra)


class RabbitBroker:
    """A private RabbitMQ node with the same TLS settings (scripts/rabbitmq.sh); its TLS
    handshake deadline is ssl_handshake_timeout, set like coney's handshake_timeout."""

    def __init__(self, tmp, pki, name, extra, users=()):
        self.tls_port = free_port()
        self.conf = os.path.join(tmp, name + '-rmq')
        os.environ['RABBITMQ_EXTRA_CONF'] = tls_conf(self.tls_port, pki, extra) + \
            'ssl_handshake_timeout = %d\nhandshake_timeout = %d\n' % (
                HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS)
        os.environ['RABBITMQ_PLUGINS'] = 'rabbitmq_auth_mechanism_ssl rabbitmq_management'
        self.mgmt_port = free_port()
        os.environ['RABBITMQ_MGMT_PORT'] = str(self.mgmt_port)
        self.rmq = brokerlib.RabbitMQ(self.conf).start()
        self.port = self.rmq.port
        if not brokerlib.wait_port(self.tls_port, 20):
            raise brokerlib.BrokerError('RabbitMQ TLS port %d not open' % self.tls_port)
        for user in users:
            for argv in (['add_user', user, 'unused-password'],
                         ['set_permissions', '-p', '/', user, '.*', '.*', '.*']):
                subprocess.run(['bash', brokerlib.RabbitMQ.SCRIPT, 'ctl', self.conf] + argv,
                               check=True, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=90)

    def alive(self):
        return True

    def stop(self):
        self.rmq.stop()
        return 0


class Broker:
    """coney with a plain and a TLS listener on free ports, from a config file."""

    def __init__(self, binary, tmp, pki, name, extra, users=()):
        self.tls_port = free_port()
        self.conf = os.path.join(tmp, name + '.conf')
        with open(self.conf, 'w') as f:
            f.write(tls_conf(self.tls_port, pki, extra))
            if users:
                # A data dir loading definitions is not seeded, so guest comes along.
                defs = os.path.join(tmp, name + '-definitions.json')
                names = ['guest'] + list(users)
                with open(defs, 'w') as d:
                    json.dump({
                        'vhosts': [{'name': '/'}],
                        'users': [{'name': u, 'password': 'guest' if u == 'guest' else
                                   'unused-password', 'tags': ['administrator']}
                                  for u in names],
                        'permissions': [{'user': u, 'vhost': '/', 'configure': '.*',
                                         'write': '.*', 'read': '.*'} for u in names]}, d)
                f.write('load_definitions = %s\n' % defs)
            f.write('handshake_timeout = %d\n' % HANDSHAKE_TIMEOUT_MS)
            self.mgmt_port = free_port()
            f.write('management.tcp.ip = %s\nmanagement.tcp.port = %d\n' % (HOST, self.mgmt_port))
            f.write('prometheus.enabled = false\n')
        self.coney = Coney(binary, os.path.join(tmp, name + '-data'),
                           os.path.join(tmp, name + '.log'), args=['--config', self.conf])
        self.port = self.coney.port
        self.coney.start()
        if not brokerlib.wait_port(self.tls_port, 10, self.coney.proc):
            raise brokerlib.BrokerError('TLS port %d not open\n%s'
                                        % (self.tls_port, self.coney.log_tail()))

    def alive(self):
        return self.coney.alive()

    def stop(self):
        try:
            return self.coney.stop()
        finally:
            self.coney.close()


def client_context(pki, cert=None, key=None, ca=None, max_version=None):
    ctx = ssl.create_default_context(cafile=ca or pki.ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def tls_params(port, ctx, **kw):
    kw.setdefault('connection_attempts', 1)
    kw.setdefault('socket_timeout', 5)
    kw.setdefault('blocked_connection_timeout', 30)
    return pika.ConnectionParameters(host=HOST, port=port,
                                     ssl_options=pika.SSLOptions(ctx, 'localhost'), **kw)


def round_trip(conn, body=b'over tls'):
    """Publish one message to a fresh queue and consume it back; returns the body."""
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish('', q, body, pika.BasicProperties(delivery_mode=2))
    for method, _props, got in ch.consume(q, auto_ack=False, inactivity_timeout=5):
        assert method is not None, 'no delivery within 5 s'
        ch.basic_ack(method.delivery_tag)
        ch.cancel()
        return got
    raise AssertionError('consume ended without a delivery')


class Canary:
    """A plain-port pika client doing passive queue.declare round trips in a thread; records
    each round trip's duration until stopped."""

    def __init__(self, port):
        self.conn = brokerlib.pika_connect(port)
        self.ch = self.conn.channel()
        self.q = self.ch.queue_declare('', exclusive=True).method.queue
        self.times = []
        self.error = None
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stop_flag.is_set():
                t = time.monotonic()
                self.ch.queue_declare(self.q, passive=True)
                self.times.append(time.monotonic() - t)
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self):
        """Stops; returns (count, p99 ms, max ms); raises if the canary failed."""
        self.stop_flag.set()
        self.thread.join(10)
        self.conn.close()
        if self.error:
            raise AssertionError('canary failed: %r' % self.error)
        ts = sorted(self.times)
        assert ts, 'canary made no round trip'
        p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))] * 1000
        return len(ts), p99, ts[-1] * 1000


def read_until_closed(sock, limit_s):
    """Bytes read until the peer closes (returns them) or `limit_s` passes (raises)."""
    sock.settimeout(limit_s)
    deadline = time.monotonic() + limit_s
    got = b''
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return got
        except socket.timeout:
            raise AssertionError('connection still open after %ss' % limit_s)
        if not chunk:
            return got
        got += chunk
        if time.monotonic() > deadline:
            raise AssertionError('connection still open after %ss' % limit_s)


# ---------------------------------------------------------------- tests

def test_pika_round_trip(t):
    """pika over TLS (TLS 1.3 and, forced, TLS 1.2) publishes and consumes a message, and a
    4 MiB one (many records and frames each way)."""
    big = os.urandom(4 * 1024 * 1024)
    for version in (None, ssl.TLSVersion.TLSv1_2):
        conn = pika.BlockingConnection(tls_params(t.a.tls_port,
                                                  client_context(t.pki, max_version=version)))
        try:
            assert round_trip(conn) == b'over tls'
            assert round_trip(conn, big) == big
        finally:
            conn.close()


def test_tls_and_plain_share_queues(t):
    """A message published over TLS is consumed on the plain port: one broker, two transports."""
    tls = pika.BlockingConnection(tls_params(t.a.tls_port, client_context(t.pki)))
    plain = brokerlib.pika_connect(t.a.port)
    try:
        q = 'tls-shared-%d' % os.getpid()
        pch = plain.channel()
        pch.queue_declare(q, auto_delete=True)
        tch = tls.channel()
        tch.confirm_delivery()
        tch.basic_publish('', q, b'from tls')
        for method, _p, body in pch.consume(q, auto_ack=True, inactivity_timeout=5):
            assert method is not None and body == b'from tls', body
            pch.cancel()
            break
    finally:
        tls.close()
        plain.close()


def mgmt_get(broker, path):
    """GET the management API of `broker` as guest; the decoded JSON."""
    import base64
    import urllib.request
    req = urllib.request.Request('http://%s:%d%s' % (HOST, broker.mgmt_port, path))
    req.add_header('Authorization', 'Basic ' + base64.b64encode(b'guest:guest').decode())
    return json.load(urllib.request.urlopen(req, timeout=5))


def listed_connections(broker, names, timeout=20):
    """/api/connections rows of the connections named (connection_name) `names`, once all
    are listed (RabbitMQ's management database learns of a connection a moment after it
    opens): {name: row}."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {r.get('user_provided_name'): r for r in mgmt_get(broker, '/api/connections')}
        got = {n: rows[n] for n in names if n in rows}
        if len(got) == len(names):
            return got
        if time.monotonic() > deadline:
            raise AssertionError('listed %s of %s' % (sorted(got), sorted(names)))
        time.sleep(0.2)


def named(name):
    return {'client_properties': {'connection_name': name}}


def test_management_lists_ssl(t):
    """The management API lists a TLS connection with ssl true and the TLS listener's port,
    and a plain one with ssl false."""
    tls = pika.BlockingConnection(tls_params(t.a.tls_port, client_context(t.pki),
                                             **named('lists-tls')))
    plain = pika.BlockingConnection(pika.ConnectionParameters(
        HOST, t.a.port, connection_attempts=1, **named('lists-plain')))
    try:
        rows = listed_connections(t.a, ['lists-tls', 'lists-plain'])
        seen = sorted((r['ssl'], r['port']) for r in rows.values())
        assert seen == [(False, t.a.port), (True, t.a.tls_port)], seen
    finally:
        tls.close()
        plain.close()


TLS_FIELDS = ('ssl', 'ssl_protocol', 'ssl_cipher', 'ssl_hash', 'ssl_key_exchange',
              'peer_cert_subject', 'peer_cert_issuer', 'peer_cert_validity')


def cert_validity(path):
    """A certificate's validity as RabbitMQ writes peer_cert_validity for a UTCTime one
    (rabbit_cert_info: '20YY-MM-DDTHH:MM:SSZ - ...'), from Python's own reading of it."""
    d = ssl._ssl._test_decode_cert(path)

    def iso(text):
        return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ssl.cert_time_to_seconds(text)))
    return '%s - %s' % (iso(d['notBefore']), iso(d['notAfter']))


# A pika TLS client in a child process, so that an OPENSSL_CONF of its own can narrow the TLS
# 1.3 suites it offers (Python's ssl module has no call for that): opens a connection named
# argv[2] to port argv[1] trusting the CA file argv[3], says "open", holds it until stdin ends.
HOLD_CLIENT = r"""
import ssl, sys, pika
port, name, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
conn = pika.BlockingConnection(pika.ConnectionParameters(
    host='127.0.0.1', port=port, ssl_options=pika.SSLOptions(ctx, 'localhost'),
    connection_attempts=1, socket_timeout=5, client_properties={'connection_name': name}))
print('open', flush=True)
sys.stdin.read()
conn.close()
"""


def hold_tls13_client(t, port, name, suite):
    """A child process holding a pika connection that offers only TLS 1.3 `suite`."""
    conf = os.path.join(t.tmp, 'openssl-%s.cnf' % suite)
    with open(conf, 'w') as f:
        f.write('openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n'
                '[ssl_sect]\nsystem_default = system_default_sect\n'
                '[system_default_sect]\nCiphersuites = %s\n' % suite)
    p = subprocess.Popen([sys.executable, '-c', HOLD_CLIENT, str(port), name, t.pki.ca],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=dict(os.environ, OPENSSL_CONF=conf))
    line = p.stdout.readline()
    if line.strip() != b'open':
        p.kill()
        p.wait(5)
        raise AssertionError('TLS 1.3 %s client did not connect: %r' % (suite, line))
    return p


CTL_KEYS = ('name', 'ssl', 'ssl_protocol', 'ssl_key_exchange', 'ssl_cipher', 'ssl_hash',
            'peer_cert_subject', 'peer_cert_issuer', 'peer_cert_validity')


def ctl_lists_tls_fields(t, broker, want):
    """`coneyctl list_connections name ssl ssl_protocol ... peer_cert_validity` (built beside
    the coney binary; it reads the management API of either broker) prints for each connection
    of `want` ({API name: TLS_FIELDS values}) the row rabbitmqctl prints: true/false, the
    values, and nothing for what is missing; on RabbitMQ rabbitmqctl itself is held to the
    same rows."""
    order = [TLS_FIELDS.index(k) for k in CTL_KEYS[2:]]
    expect = set()
    for name, values in want.items():
        cells = [name, 'true' if values[0] else 'false']
        cells += ['' if values[i] is None else values[i] for i in order]
        expect.add('\t'.join(cells))
    argvs = []
    coneyctl = os.path.join(os.path.dirname(t.binary), 'coneyctl')
    if os.access(coneyctl, os.X_OK):
        argvs.append([coneyctl, '--port', str(broker.mgmt_port), 'list_connections'])
    else:
        print('    coneyctl not built beside %s: its check skipped' % t.binary)
    if t.rabbitmq:
        argvs.append(['bash', brokerlib.RabbitMQ.SCRIPT, 'ctl', broker.conf, 'list_connections'])
    for argv in argvs:
        cp = subprocess.run(argv + list(CTL_KEYS), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=90)
        assert cp.returncode == 0, (argv, cp.returncode, cp.stderr[-500:])
        lines = cp.stdout.decode().splitlines()
        assert '\t'.join(CTL_KEYS) in lines, (argv[0], lines[:3])
        got = {line for line in lines if line.split('\t', 1)[0] in want}
        assert got == expect, (argv[0], sorted(got ^ expect))


def test_management_tls_fields(t):
    """GET /api/connections and /api/connections/NAME report each connection's TLS session
    and client certificate as RabbitMQ 3.10 does, on broker c (verify_peer, certificate
    optional; the server key is EC P-256): TLS 1.3 is tlsv1.3 / aes_256_gcm / aead / any,
    TLS 1.2 is tlsv1.2 / aes_256_gcm / aead / ecdhe_ecdsa (pika's defaults against either
    broker), and clients offering only AES-128-GCM or CHACHA20-POLY1305 get aes_128_gcm and
    chacha20_poly1305 over either version; a client certificate gives its subject and issuer
    in RabbitMQ's DN form and its validity as '2026-12-04T13:56:48Z - 2026-12-06T13:56:48Z'.
    What a connection lacks (the certificate without one, everything on the plain port, ssl
    false) is null in the listing and "" for the one connection. RabbitMQ 3.10.8 (OTP 25)
    gives exactly these (--rabbitmq), and by hand with an RSA server key ecdhe_rsa, and for a
    notAfter past 2049 (a GeneralizedTime) '{generalTime,"20540421135743Z"}' (the unit tests
    of src/auth/cert_subject.rs and src/net/tls.rs hold those). coneyctl list_connections
    shows them as rabbitmqctl does (ctl_lists_tls_fields)."""
    p = t.pki
    setups = [
        ('fields-tls13', None, None, None),
        ('fields-tls12', ssl.TLSVersion.TLSv1_2, None, None),
        ('fields-tls13-cert', None, p.client, p.client_key),
        ('fields-tls12-cert', ssl.TLSVersion.TLSv1_2, p.ext_user, p.ext_user_key),
    ]
    session = {
        None: ('tlsv1.3', 'aes_256_gcm', 'aead', 'any'),
        ssl.TLSVersion.TLSv1_2: ('tlsv1.2', 'aes_256_gcm', 'aead', 'ecdhe_ecdsa'),
    }
    subjects = {p.client: 'CN=guest', p.ext_user: 'O=coney test,CN=tls-user'}
    want = {'fields-plain': (False,) + (None,) * 7}
    no_cert = (None, None, None)
    conns = []
    holds = []
    try:
        for name, version, cert, key in setups:
            conns.append(pika.BlockingConnection(tls_params(
                t.c.tls_port, client_context(p, cert, key, max_version=version),
                **named(name))))
            peer = ((subjects[cert], 'CN=coney test CA', cert_validity(cert)) if cert
                    else no_cert)
            want[name] = (True,) + session[version] + peer
        for openssl_name, cipher in (('ECDHE-ECDSA-AES128-GCM-SHA256', 'aes_128_gcm'),
                                     ('ECDHE-ECDSA-CHACHA20-POLY1305', 'chacha20_poly1305')):
            ctx = client_context(p, max_version=ssl.TLSVersion.TLSv1_2)
            ctx.set_ciphers(openssl_name)
            name = 'fields-tls12-' + cipher
            conns.append(pika.BlockingConnection(tls_params(t.c.tls_port, ctx, **named(name))))
            want[name] = (True, 'tlsv1.2', cipher, 'aead', 'ecdhe_ecdsa') + no_cert
        for suite, cipher in (('TLS_AES_128_GCM_SHA256', 'aes_128_gcm'),
                              ('TLS_CHACHA20_POLY1305_SHA256', 'chacha20_poly1305')):
            name = 'fields-tls13-' + cipher
            holds.append(hold_tls13_client(t, t.c.tls_port, name, suite))
            want[name] = (True, 'tlsv1.3', cipher, 'aead', 'any') + no_cert
        conns.append(pika.BlockingConnection(pika.ConnectionParameters(
            HOST, t.c.port, connection_attempts=1, **named('fields-plain'))))
        rows = listed_connections(t.c, list(want))
        import urllib.parse
        for name, expect in want.items():
            got = tuple(rows[name].get(k, 'absent') for k in TLS_FIELDS)
            assert got == expect, ('listing', name, got, expect)
            one = mgmt_get(t.c, '/api/connections/'
                           + urllib.parse.quote(rows[name]['name'], safe=''))
            got = tuple(one.get(k, 'absent') for k in TLS_FIELDS)
            expect_one = tuple('' if v is None else v for v in expect)
            assert got == expect_one, ('one', name, got, expect_one)
        ctl_lists_tls_fields(t, t.c, {rows[n]['name']: v for n, v in want.items()})
    finally:
        for c in conns:
            c.close()
        for h in holds:
            h.stdin.close()
            try:
                h.wait(10)
            except subprocess.TimeoutExpired:
                h.kill()
                h.wait(5)


def s_client(port, *extra, send=PROTOCOL_HEADER, wait=1.5):
    """Runs openssl s_client, writes `send` after the handshake, returns (rc, stdout)."""
    argv = ['openssl', 's_client', '-connect', '%s:%d' % (HOST, port), '-quiet',
            '-verify_return_error', '-servername', 'localhost'] + list(extra)
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    # Bounds the whole exchange: reading stdout below ends when s_client exits.
    killer = threading.Timer(10, p.kill)
    killer.start()
    try:
        try:
            p.stdin.write(send)
            p.stdin.flush()
        except BrokenPipeError:
            pass  # s_client already gave up (a failed handshake)
        # s_client -quiet exits at end of stdin: give the answer time to arrive first.
        time.sleep(wait)
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
        out = p.stdout.read()
        p.wait(10)
    finally:
        killer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait(5)
    return p.returncode, out


def test_s_client_handshake(t):
    """openssl s_client completes TLS 1.3 and TLS 1.2 handshakes (verifying the server against
    the test CA) and then reads connection.start in answer to the protocol header."""
    for version in ('-tls1_3', '-tls1_2'):
        rc, out = s_client(t.a.tls_port, '-CAfile', t.pki.ca, version)
        assert out.startswith(START_PREFIX), (version, rc, out[:40])
        assert out[7:11] == START_METHOD, (version, out[:16])
        # Broker a configures PLAIN, AMQPLAIN and EXTERNAL; over TLS all three are offered.
        for mechanism in (b'PLAIN', b'AMQPLAIN', b'EXTERNAL'):
            assert mechanism in out, (mechanism, out)


def test_s_client_wrong_ca_fails(t):
    """A client that trusts another CA rejects the server's certificate (the server really
    presents the configured certificate, not some default)."""
    rc, out = s_client(t.a.tls_port, '-CAfile', t.pki.rogue_ca, wait=0.5)
    assert rc != 0 and not out.startswith(START_PREFIX), (rc, out[:40])


def test_plain_client_on_tls_port(t):
    """A plain AMQP client on the TLS port gets a TLS alert and the socket closes at once, and
    a canary on the plain port keeps its round trips short meanwhile."""
    canary = Canary(t.a.port)
    clients = 0
    try:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            with socket.create_connection((HOST, t.a.tls_port), timeout=5) as s:
                s.sendall(PROTOCOL_HEADER)
                got = read_until_closed(s, 5)
                # A TLS alert record (content type 21), or nothing at all.
                assert got == b'' or got[:1] == b'\x15', got[:20]
                clients += 1
    finally:
        n, p99, worst = canary.stop()
    print('    canary over %d plain-on-TLS clients in 2 s: %d round trips, p99 %.2f ms, '
          'max %.2f ms' % (clients, n, p99, worst))
    assert n >= 50 and p99 < 50, (n, p99)
    # The broker still serves TLS after all that.
    conn = pika.BlockingConnection(tls_params(t.a.tls_port, client_context(t.pki)))
    conn.close()


def client_hello():
    """The bytes of a real TLS ClientHello (Python's ssl over memory BIOs)."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname='localhost')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def handshake_flood(port, seconds, slow, burst, rate, report):
    """In a child process (so the canary's own timing shares no interpreter lock with it):
    `slow` connections that send half a ClientHello and stall, kept open, while bursts of
    `burst` connections send garbage, oversized or bad records, plain AMQP or a ClientHello
    with its body scrambled and wait to be closed, for `seconds`, at most `rate` a second. Puts (garbage connections, slow ones
    the broker closed, error or None) on `report`."""
    import selectors
    hello = client_hello()
    # Each is refused as soon as it is read (the stalled ones wait for the deadline).
    junk = [os.urandom(3000), PROTOCOL_HEADER * 50, b'\x16\x03\x01\xff\xff' + os.urandom(2000),
            b'\x16\x03\x03\x00\x05hello', hello[:5] + os.urandom(len(hello) - 5),
            hello[:9] + os.urandom(len(hello) - 9)]
    socks, garbage = [], 0
    try:
        for _ in range(slow):
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(hello[:len(hello) // 2])
            socks.append(s)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            next_burst = time.monotonic() + burst / rate
            sel = selectors.DefaultSelector()
            for i in range(burst):
                g = socket.create_connection((HOST, port), timeout=5)
                g.sendall(junk[i % len(junk)])
                g.setblocking(False)
                sel.register(g, selectors.EVENT_READ)
            open_ = burst
            limit = time.monotonic() + 5
            while open_ and time.monotonic() < limit:
                for key, _ in sel.select(0.5):
                    try:
                        data = key.fileobj.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b''
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        open_ -= 1
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()
            if open_:
                raise AssertionError('%d garbage connections still open after 5 s' % open_)
            garbage += burst
            time.sleep(max(0, next_burst - time.monotonic()))
        # The stalled handshakes end by the handshake deadline.
        closed = 0
        for s in socks:
            read_until_closed(s, HANDSHAKE_TIMEOUT_MS / 1000 + 3)
            closed += 1
        report.put((garbage, closed, None))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        report.put((garbage, 0, repr(e)))
    finally:
        for s in socks:
            s.close()


def method_frame(channel, class_id, method_id, args=b''):
    payload = struct.pack('>HH', class_id, method_id) + args
    return struct.pack('>BHI', 1, channel, len(payload)) + payload + b'\xce'


class TlsCanary(Canary):
    """The canary over TLS with hand-written frames (pika's own polling would dominate a
    10 ms bound): logs in as guest, opens channel 1, then times passive exchange.declare
    round trips until stopped."""

    DECLARE = method_frame(1, 40, 10, b'\x00\x00\x0aamq.direct\x06direct\x01\x00\x00\x00\x00')

    def __init__(self, port, ctx):
        sock, _ = amqp_start(port, ctx)
        sock.settimeout(5)
        caps = b''
        resp = b'\x00guest\x00guest'
        sock.sendall(method_frame(0, 10, 11, struct.pack('>I', 0) + b'\x05PLAIN'
                                  + struct.pack('>I', len(resp)) + resp + b'\x05en_US' + caps))
        tune = read_frame(sock)
        assert tune is not None and tune[:4] == b'\x00\x0a\x00\x1e', tune
        channel_max, frame_max = struct.unpack('>HI', tune[4:10])
        sock.sendall(method_frame(0, 10, 31, struct.pack('>HIH', channel_max, frame_max, 0))
                     + method_frame(0, 10, 40, b'\x01/\x00\x00')
                     + method_frame(1, 20, 10, b'\x00'))
        self.sock = sock
        self.buf = b''
        for want in (b'\x00\x0a\x00\x29', b'\x00\x14\x00\x0b'):  # open-ok, channel open-ok
            got = self.next_frame()
            assert got[:4] == want, (want, got)
        self.times = []
        self.error = None
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def next_frame(self):
        """The next frame's payload (frames that arrived together are kept for later)."""
        while len(self.buf) < 7 or len(self.buf) < 8 + struct.unpack('>I', self.buf[3:7])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError('canary connection closed')
            self.buf += chunk
        n = struct.unpack('>I', self.buf[3:7])[0]
        payload, self.buf = self.buf[7:7 + n], self.buf[8 + n:]
        return payload

    def _run(self):
        try:
            while not self.stop_flag.is_set():
                t = time.monotonic()
                self.sock.sendall(self.DECLARE)
                got = self.next_frame()
                assert got[:4] == b'\x00\x28\x00\x0b', got
                self.times.append(time.monotonic() - t)
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)
        self.sock.close()
        self.conn = None
        if self.error:
            raise AssertionError('canary failed: %r' % self.error)
        ts = sorted(self.times)
        assert ts, 'canary made no round trip'
        p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))] * 1000
        return len(ts), p99, ts[-1] * 1000


def test_garbage_handshake_flood(t):
    """For 3 s, 200 stalled half ClientHellos stay open while bursts of 100 concurrent
    connections (up to 5,000 a second) send garbage, bad records, plain AMQP and scrambled ClientHellos to the TLS
    port (from another process): every one is closed (the stalled ones by the handshake
    deadline), and a canary over TLS keeps its round-trip p99 under 10 ms (on RabbitMQ the
    p99 is printed, not asserted)."""
    import multiprocessing
    canary = TlsCanary(t.a.tls_port, client_context(t.pki))
    report = multiprocessing.Queue()
    flood = multiprocessing.Process(target=handshake_flood,
                                    args=(t.a.tls_port, 3, 200, 100, 5000, report))
    try:
        flood.start()
        garbage, closed, error = report.get(timeout=60)
    finally:
        flood.join(10)
        if flood.is_alive():
            flood.kill()
        n, p99, worst = canary.stop()
    print('    TLS canary over %d garbage + 200 stalled handshakes: %d round trips, p99 %.2f ms, '
          'max %.2f ms' % (garbage, n, p99, worst))
    assert error is None, error
    assert closed == 200, closed
    assert garbage >= 100 and n >= 100, (garbage, n)
    if t.rabbitmq:
        # Measured for comparison only: RabbitMQ 3.10 gave p99 22 ms here.
        print('    (RabbitMQ: the 10 ms bound is coney\'s, not asserted)')
        return
    assert p99 < 10, p99


def test_handshake_deadline(t):
    """A client that opens a TLS connection and never finishes the handshake is closed by the
    handshake deadline (handshake_timeout), not kept forever."""
    with socket.create_connection((HOST, t.a.tls_port), timeout=5) as s:
        s.sendall(b'\x16\x03\x01\x02\x00\x01')  # the start of a ClientHello record
        t0 = time.monotonic()
        read_until_closed(s, HANDSHAKE_TIMEOUT_MS / 1000 + 3)
        took = time.monotonic() - t0
    assert took >= HANDSHAKE_TIMEOUT_MS / 1000 - 1.1, took


def stalled_consumer(t, use_tls, n, size):
    """Publishes n messages to a queue whose only consumer (auto-ack) has stopped reading;
    returns how many the queue still holds once the count settles, after checking that the
    consumer, reading again, gets every one."""
    if use_tls:
        consumer = pika.BlockingConnection(tls_params(t.a.tls_port, client_context(t.pki)))
    else:
        consumer = brokerlib.pika_connect(t.a.port)
    publisher = brokerlib.pika_connect(t.a.port)
    # Counts on a connection of its own: publisher flow may pause the publisher's connection.
    observer = brokerlib.pika_connect(t.a.port)
    try:
        q = 'bp-%s-%d' % ('tls' if use_tls else 'plain', os.getpid())
        och = observer.channel()
        och.queue_declare(q)
        got = []
        consumer.channel().basic_consume(q, lambda ch, m, p, b: got.append(len(b)),
                                         auto_ack=True)
        # pika reads its socket only inside its own calls: from here the consumer is stalled.
        pch = publisher.channel()
        body = b'x' * size
        for _ in range(n):
            pch.basic_publish('', q, body)
        deadline = time.monotonic() + 15
        last = None
        while time.monotonic() < deadline:
            count = och.queue_declare(q, passive=True).method.message_count
            if count == last:
                break
            last = count
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            consumer.process_data_events(time_limit=0.5)
        assert len(got) == n, (use_tls, len(got), n)
        och.queue_delete(q)
        return last
    finally:
        consumer.close()
        publisher.close()
        observer.close()


def test_back_pressure(t):
    """A TLS consumer that stops reading stops deliveries as a plain one does: the queue keeps
    as many messages (within 2 MiB: rustls stages at most 64 KiB beyond the outbox's marks,
    and the kernel's socket buffers vary by about 1 MiB between runs),
    and once it reads again it gets every message. The figures are printed for coney and
    RabbitMQ alike; the comparison is coney's bound."""
    n, size = 400, 64 * 1024
    plain = stalled_consumer(t, False, n, size)
    tls = stalled_consumer(t, True, n, size)
    print('    stalled consumer, %d x %d KiB published: still queued plain %d, TLS %d'
          % (n, size // 1024, plain, tls))
    # RabbitMQ's ssl process buffers more (about 250 of the 400 delivered in a run).
    assert t.rabbitmq or (tls >= plain - 32 and tls > n // 4), (plain, tls)


def amqp_start(port, ctx=None):
    """Opens a socket (TLS when `ctx`), sends the protocol header and reads connection.start;
    returns (socket, mechanisms as a str)."""
    sock = socket.create_connection((HOST, port), timeout=5)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname='localhost')
    sock.sendall(PROTOCOL_HEADER)
    payload = read_frame(sock)
    assert payload is not None and payload[:4] == START_METHOD, payload
    i = 6
    i += 4 + struct.unpack('>I', payload[i:i + 4])[0]  # server properties
    n = struct.unpack('>I', payload[i:i + 4])[0]
    return sock, payload[i + 4:i + 4 + n].decode()


def read_frame(sock):
    """One frame's payload, or None if the peer closed first."""
    buf = b''
    while len(buf) < 7 or len(buf) < 8 + struct.unpack('>I', buf[3:7])[0]:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return None
        if not chunk:
            return None
        buf += chunk
    return buf[7:7 + struct.unpack('>I', buf[3:7])[0]]


def start_ok(sock, mechanism, response=b''):
    """Sends start-ok (announcing authentication_failure_close); returns what came back:
    'tune', 'close CODE TEXT' or 'closed' (the socket went without a word)."""
    caps = b'\x1cauthentication_failure_closet\x01'
    props = b'\x0ccapabilitiesF' + struct.pack('>I', len(caps)) + caps
    mech = mechanism.encode()
    payload = (b'\x00\x0a\x00\x0b' + struct.pack('>I', len(props)) + props
               + bytes([len(mech)]) + mech + struct.pack('>I', len(response)) + response
               + b'\x05en_US')
    sock.sendall(struct.pack('>BHI', 1, 0, len(payload)) + payload + b'\xce')
    sock.settimeout(10)
    got = read_frame(sock)
    sock.close()
    if got is None:
        return 'closed'
    if got[:4] == b'\x00\x0a\x00\x1e':
        return 'tune'
    if got[:4] == b'\x00\x0a\x00\x32':
        code = struct.unpack('>H', got[4:6])[0]
        return 'close %d %s' % (code, got[7:7 + got[6]].decode())
    return 'method %r' % got[:4]


def external_params(t, port, cert, key):
    return tls_params(port, client_context(t.pki, cert, key),
                      credentials=pika.credentials.ExternalCredentials())


def test_external_login_by_subject_dn(t):
    """SASL EXTERNAL (auth_mechanisms PLAIN, AMQPLAIN, EXTERNAL; ssl_cert_login_from default):
    over TLS with a verified client certificate EXTERNAL is offered (RabbitMQ's order varies
    from node to node, so only the set is compared), and
    pika logs in as the user named by the subject DN ('O=coney test,CN=tls-user') with no
    password and publishes and consumes."""
    ctx = client_context(t.pki, t.pki.ext_user, t.pki.ext_user_key)
    sock, mechanisms = amqp_start(t.c.tls_port, ctx)
    sock.close()
    assert sorted(mechanisms.split()) == ['AMQPLAIN', 'EXTERNAL', 'PLAIN'], mechanisms
    conn = pika.BlockingConnection(
        external_params(t, t.c.tls_port, t.pki.ext_user, t.pki.ext_user_key))
    try:
        assert round_trip(conn) == b'over tls'
    finally:
        conn.close()


def test_external_unknown_user_refused(t):
    """EXTERNAL with a verified certificate whose subject names no user: 403 with RabbitMQ's
    text (no password is checked, but the user must exist); pika raises."""
    ctx = client_context(t.pki, t.pki.ext_nobody, t.pki.ext_nobody_key)
    sock, _ = amqp_start(t.c.tls_port, ctx)
    got = start_ok(sock, 'EXTERNAL')
    assert got == EXT_FAILED, got
    try:
        conn = pika.BlockingConnection(
            external_params(t, t.c.tls_port, t.pki.ext_nobody, t.pki.ext_nobody_key))
    except pika.exceptions.AMQPConnectionError:
        return
    conn.close()
    raise AssertionError('EXTERNAL login for an unknown certificate user succeeded')


def test_external_not_offered_on_plain_port(t):
    """The plain port never offers EXTERNAL though it is configured, and a client choosing it
    there is dropped without a word, as RabbitMQ drops any handshake error ("invalid
    authentication mechanism"); so is an unknown mechanism."""
    for mechanism in ('EXTERNAL', 'NO-SUCH-MECH'):
        sock, mechanisms = amqp_start(t.c.port)
        assert mechanisms == 'PLAIN AMQPLAIN', mechanisms
        got = start_ok(sock, mechanism)
        assert got == 'closed', (mechanism, got)


def test_external_without_client_certificate(t):
    """Over TLS without a client certificate (verify_peer optional, and verify_none) EXTERNAL
    is still offered, as rabbitmq_auth_mechanism_ssl does, and choosing it is 403 with
    RabbitMQ's text ("connection peer presented no TLS (x.509) certificate" in the log);
    PLAIN still works there."""
    for broker in (t.c, t.a):
        sock, mechanisms = amqp_start(broker.tls_port, client_context(t.pki))
        assert sorted(mechanisms.split()) == ['AMQPLAIN', 'EXTERNAL', 'PLAIN'], mechanisms
        got = start_ok(sock, 'EXTERNAL')
        assert got == EXT_FAILED, got
        sock, _ = amqp_start(broker.tls_port, client_context(t.pki))
        got = start_ok(sock, 'PLAIN', b'\x00guest\x00guest')
        assert got == 'tune', got


def test_external_login_by_common_name(t):
    """ssl_cert_login_from = common_name with auth_mechanisms PLAIN and EXTERNAL: the client
    certificate /CN=guest logs in as guest over EXTERNAL; only the configured mechanisms are
    offered, and one not configured (AMQPLAIN) drops the connection."""
    ctx = client_context(t.pki, t.pki.client, t.pki.client_key)
    sock, mechanisms = amqp_start(t.b.tls_port, ctx)
    assert sorted(mechanisms.split()) == ['EXTERNAL', 'PLAIN'], mechanisms
    amqplain = (b'\x05LOGINS\x00\x00\x00\x05guest' b'\x08PASSWORDS\x00\x00\x00\x05guest')
    got = start_ok(sock, 'AMQPLAIN', amqplain)
    assert got == 'closed', got
    conn = pika.BlockingConnection(
        external_params(t, t.b.tls_port, t.pki.client, t.pki.client_key))
    try:
        assert round_trip(conn) == b'over tls'
    finally:
        conn.close()
    ctx = client_context(t.pki, t.pki.ext_user, t.pki.ext_user_key)
    sock, _ = amqp_start(t.b.tls_port, ctx)
    got = start_ok(sock, 'EXTERNAL')
    assert got == EXT_FAILED, got  # CN 'tls-user' is no user on this broker


def test_verify_peer_required(t):
    """verify_peer with fail_if_no_peer_cert = true: no client certificate, or one from another
    CA, is refused; a certificate signed by the configured CA gets a working connection."""
    port = t.b.tls_port
    for cert, key in ((None, None), (t.pki.rogue_client, t.pki.rogue_client_key)):
        try:
            conn = pika.BlockingConnection(
                tls_params(port, client_context(t.pki, cert, key)))
        except pika.exceptions.AMQPConnectionError:
            continue
        conn.close()
        raise AssertionError('connected with client certificate %r' % cert)
    conn = pika.BlockingConnection(
        tls_params(port, client_context(t.pki, t.pki.client, t.pki.client_key)))
    try:
        assert round_trip(conn) == b'over tls'
    finally:
        conn.close()
    rc, out = s_client(port, '-CAfile', t.pki.ca, wait=0.5)
    assert not out.startswith(START_PREFIX), (rc, out[:40])


def test_verify_peer_optional(t):
    """verify_peer with fail_if_no_peer_cert = false: a client without a certificate connects,
    one with a certificate from another CA is refused."""
    port = t.c.tls_port
    conn = pika.BlockingConnection(tls_params(port, client_context(t.pki)))
    conn.close()
    try:
        conn = pika.BlockingConnection(tls_params(
            port, client_context(t.pki, t.pki.rogue_client, t.pki.rogue_client_key)))
    except pika.exceptions.AMQPConnectionError:
        return
    conn.close()
    raise AssertionError('a client certificate from another CA was accepted')


def start_fails(t, name, lines, expect):
    """coney with this config exits 78 and says `expect` on stderr, and so does
    --check-config; nothing listens."""
    conf = os.path.join(t.tmp, name + '.conf')
    port = free_port()
    with open(conf, 'w') as f:
        f.write('listeners.tcp.default = %s:%d\n' % (HOST, port) + lines)
    for argv in ([t.binary, '--config', conf, '--data-dir', os.path.join(t.tmp, name)],
                 [t.binary, '--check-config', conf]):
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
        err = cp.stderr.decode(errors='replace')
        assert cp.returncode == 78, (argv, cp.returncode, err)
        assert expect in err, (expect, err)
    assert not brokerlib.port_open(port)


def test_bad_keys_stop_the_start(t):
    """coney only: Missing, unreadable or mismatched certificates and keys stop the start with exit 78 and
    a message naming the file; verify_peer without a CA file too."""
    if t.rabbitmq:
        print('    SKIP on RabbitMQ (coney command line and exit codes)')
        return
    p = t.pki
    ssl_on = 'listeners.ssl.default = %s:%d\n' % (HOST, free_port())
    cases = [
        ('no-cert', ssl_on + 'ssl_options.keyfile = %s\n' % p.server_key,
         'ssl_options.certfile is not'),
        ('no-key', ssl_on + 'ssl_options.certfile = %s\n' % p.server, 'ssl_options.keyfile is not'),
        ('missing-cert', ssl_on + 'ssl_options.certfile = %s/nope.pem\n'
         'ssl_options.keyfile = %s\n' % (t.tmp, p.server_key), 'nope.pem'),
        ('garbage-cert', ssl_on + 'ssl_options.certfile = %s\nssl_options.keyfile = %s\n'
         % (p.garbage, p.server_key), 'garbage.pem'),
        ('key-is-cert', ssl_on + 'ssl_options.certfile = %s\nssl_options.keyfile = %s\n'
         % (p.server, p.server), 'ssl_options.keyfile'),
        ('wrong-key', ssl_on + 'ssl_options.certfile = %s\nssl_options.keyfile = %s\n'
         % (p.server, p.client_key), 'ssl_options.certfile'),
        ('peer-no-ca', ssl_on + 'ssl_options.certfile = %s\nssl_options.keyfile = %s\n'
         'ssl_options.verify = verify_peer\n' % (p.server, p.server_key), 'cacertfile'),
        ('bad-verify', ssl_on + 'ssl_options.verify = verify_maybe\n', 'verify_maybe'),
    ]
    for name, lines, expect in cases:
        start_fails(t, name, lines, expect)


TESTS = [
    test_pika_round_trip,
    test_tls_and_plain_share_queues,
    test_management_lists_ssl,
    test_management_tls_fields,
    test_s_client_handshake,
    test_s_client_wrong_ca_fails,
    test_plain_client_on_tls_port,
    test_garbage_handshake_flood,
    test_handshake_deadline,
    test_back_pressure,
    test_verify_peer_required,
    test_verify_peer_optional,
    test_bad_keys_stop_the_start,
    test_external_login_by_subject_dn,
    test_external_unknown_user_refused,
    test_external_not_offered_on_plain_port,
    test_external_without_client_certificate,
    test_external_login_by_common_name,
]


class Env:
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--coney', default=os.path.join(brokerlib.REPO, 'target/release/coney'))
    ap.add_argument('--only', default=None)
    ap.add_argument('--rabbitmq', action='store_true')
    args = ap.parse_args()
    if not shutil.which('openssl'):
        print('openssl is missing (scripts/test-tls.sh installs it)')
        print('0 passed, 1 failed')
        return 1
    t = Env()
    t.binary = os.path.abspath(args.coney)
    t.tmp = tempfile.mkdtemp(prefix='coney-tls.')
    brokers = []
    passed = failed = 0
    try:
        t.pki = Pki(t.tmp)
        t.rabbitmq = args.rabbitmq
        if args.rabbitmq:
            def make(name, extra, users=()):
                return RabbitBroker(t.tmp, t.pki, name, extra, users)
        else:
            def make(name, extra, users=()):
                return Broker(t.binary, t.tmp, t.pki, name, extra, users)
        all_mechanisms = ('auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = AMQPLAIN\n'
                          'auth_mechanisms.3 = EXTERNAL\n')
        t.a = make('a', 'ssl_options.verify = verify_none\n' + all_mechanisms)
        brokers.append(t.a)
        t.b = make('b', 'ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n'
                   'auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = EXTERNAL\n'
                   'ssl_cert_login_from = common_name\n')
        brokers.append(t.b)
        t.c = make('c', 'ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n'
                   + all_mechanisms, users=[EXT_DN_USER])
        brokers.append(t.c)
        for test in TESTS:
            if args.only and args.only not in test.__name__:
                continue
            t0 = time.monotonic()
            try:
                test(t)
                passed += 1
                print('PASS %s (%.1fs)' % (test.__name__, time.monotonic() - t0))
            except Exception:  # noqa: BLE001 - every failure is reported and counted
                failed += 1
                print('FAIL %s' % test.__name__)
                traceback.print_exc(file=sys.stdout)
            dead = [b.conf for b in brokers if not b.alive()]
            if dead:
                failed += 1
                print('FAIL broker died: %s' % dead)
                break
    except brokerlib.BrokerError as e:
        failed += 1
        print('FAIL setup: %s' % e)
    finally:
        for b in brokers:
            try:
                rc = b.stop()
                if rc != 0:
                    failed += 1
                    print('FAIL broker %s exited %s' % (b.conf, rc))
            except brokerlib.BrokerError as e:
                failed += 1
                print('FAIL stop: %s' % e)
        if os.environ.get('KEEP_TMP'):
            print('kept %s' % t.tmp)
        else:
            shutil.rmtree(t.tmp, ignore_errors=True)
        print('%d passed, %d failed' % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
