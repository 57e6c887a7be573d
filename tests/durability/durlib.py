"""Helpers for the durability tests: a coney process that can be stopped
cleanly (SIGTERM) or crashed (SIGKILL) and started again on the same data
directory, pika 1.x connections to it, and small assertion helpers.

Everything here talks to the broker through pika (a real client); nothing
uses coney's own code.
"""

import os
import re
import signal
import sys
import time

import pika

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'scenarios'))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lib'))
import brokerlib  # noqa: E402  (the coney process, pika connections, client environments)
import harness  # noqa: E402  (Program: a subprocess whose output lines are awaited)


class TestFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise TestFailure(message)


RECOVERY_RE = re.compile(
    r'message store: (\d+) segments, (\d+) records, (\d+) messages recovered, '
    r'clean shutdown: (true|false), torn tail: (\d+) bytes, damaged records: (\d+)')


class Broker(brokerlib.Coney):
    """coney on a fixed port and data directory, restarted on them: stopping with SIGTERM
    must end it with status 0, SIGKILL must kill it."""

    def term(self, timeout=10):
        """Clean stop: SIGTERM, which must end the process with status 0; returns how long
        it took."""
        t0 = time.monotonic()
        rc = self.stop(timeout)
        check(rc == 0, 'coney exited with status %s after SIGTERM, expected 0\n%s'
              % (rc, self.log_tail()))
        return time.monotonic() - t0

    def kill(self):
        """Crash: SIGKILL."""
        rc = super().kill()
        check(rc == -signal.SIGKILL, 'coney exited with %s, expected death by SIGKILL' % rc)

    def restart(self, clean=True):
        if clean:
            self.term()
        else:
            self.kill()
        return self.start()

    def recovery(self, timeout=5):
        """The store's recovery report of the current start, as a dict."""
        deadline = time.monotonic() + timeout
        while True:
            m = RECOVERY_RE.search(self.log_text())
            if m:
                return {'segments': int(m.group(1)), 'records': int(m.group(2)),
                        'messages': int(m.group(3)), 'clean': m.group(4) == 'true',
                        'torn_bytes': int(m.group(5)), 'damaged': int(m.group(6))}
            check(time.monotonic() < deadline,
                  'no "message store: ..." recovery line in the log of start %d\n%s'
                  % (self.starts, self.log_tail()))
            time.sleep(0.05)

    def segment_files(self):
        d = os.path.join(self.data_dir, 'msgs')
        try:
            return sorted(n for n in os.listdir(d) if n.endswith('.seg'))
        except FileNotFoundError:
            return []

    # -- clients -------------------------------------------------------
    def connect(self, **kw):
        return brokerlib.pika_connect(self.port, **kw)

    def env(self):
        """Environment for client programs run as subprocesses."""
        return brokerlib.program_env(self.port)


# ---------------------------------------------------------------- client helpers

def queue_count(broker, queue):
    """Message count of `queue` (passive declare), or None if it does not exist (404)."""
    conn = broker.connect()
    try:
        ch = conn.channel()
        try:
            ok = ch.queue_declare(queue=queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            check(e.reply_code == 404, 'passive declare of %r failed with %s' % (queue, e))
            return None
        return ok.method.message_count
    finally:
        if conn.is_open:
            conn.close()


def exchange_exists(broker, exchange):
    conn = broker.connect()
    try:
        ch = conn.channel()
        try:
            ch.exchange_declare(exchange=exchange, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            check(e.reply_code == 404, 'passive declare of exchange %r failed with %s' % (exchange, e))
            return False
    finally:
        if conn.is_open:
            conn.close()


class Got:
    __slots__ = ('body', 'redelivered', 'props', 'routing_key', 'exchange', 'tag')

    def __init__(self, method, props, body):
        self.body = body
        self.tag = method.delivery_tag
        self.redelivered = method.redelivered
        self.props = props
        self.routing_key = method.routing_key
        self.exchange = method.exchange

    def __repr__(self):
        return 'Got(%r, redelivered=%s)' % (self.body[:40], self.redelivered)


def drain(broker, queue, expect=None, timeout=30, prefetch=500):
    """Consume (manual acks) everything in `queue`; returns [Got] in delivery order.

    The number to expect is the queue's message count (passive declare) unless
    given. Everything received is acked; afterwards the queue must be empty.
    """
    conn = broker.connect()
    try:
        ch = conn.channel()
        count = ch.queue_declare(queue=queue, passive=True).method.message_count
        if expect is not None:
            check(count == expect, 'queue %s holds %d messages, expected %d' % (queue, count, expect))
        got = []
        if count:
            ch.basic_qos(prefetch_count=prefetch)
            deadline = time.monotonic() + timeout
            last_tag = acked_tag = 0
            for method, props, body in ch.consume(queue, auto_ack=False, inactivity_timeout=1.0):
                if method is None:
                    check(time.monotonic() < deadline,
                          'draining %s: got %d of %d messages within %ss' % (queue, len(got), count, timeout))
                    continue
                got.append(Got(method, props, body))
                last_tag = method.delivery_tag
                if len(got) % 100 == 0:
                    ch.basic_ack(last_tag, multiple=True)
                    acked_tag = last_tag
                if len(got) >= count:
                    break
                check(time.monotonic() < deadline,
                      'draining %s: got %d of %d messages within %ss' % (queue, len(got), count, timeout))
            if acked_tag != last_tag:   # acking a tag twice is a 406
                ch.basic_ack(last_tag, multiple=True)
            ch.cancel()
        left = ch.queue_declare(queue=queue, passive=True).method.message_count
        check(left == 0, 'queue %s still holds %d messages after draining %d' % (queue, left, len(got)))
        return got
    finally:
        if conn.is_open:
            conn.close()


def wait_forced_close(conn, timeout=10):
    """Pump a client connection until the broker closes it; returns (code, text)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn.process_data_events(time_limit=0.2)
        except pika.exceptions.ConnectionClosedByBroker as e:
            return e.reply_code, e.reply_text
        except pika.exceptions.AMQPConnectionError as e:
            raise TestFailure('the connection was lost without a connection.close: %r' % (e,))
        if not conn.is_open:
            raise TestFailure('connection closed without ConnectionClosedByBroker')
    raise TestFailure('the broker did not close the client connection within %ss' % timeout)


class Programs:
    """Client programs run as subprocesses (tests/scenarios/harness.Program)."""

    def __init__(self):
        self.started = []

    def start(self, python, path, args=(), env=None, name=None):
        check(os.path.exists(path), 'missing program %s' % path)
        check(os.access(python, os.X_OK), 'no python at %s (run scripts/pyenv.sh)' % python)
        argv = [python, '-u', path] + [str(a) for a in args]
        p = harness.Program(self, name or os.path.basename(path), argv, env or dict(os.environ))
        self.started.append(p)
        return p

    def close(self):
        for p in self.started:
            if p.alive():
                p.kill()


def as_failure(exc):
    """harness.ScenarioFailure and brokerlib.BrokerError -> TestFailure with the same message."""
    if isinstance(exc, (harness.ScenarioFailure, brokerlib.BrokerError)):
        return TestFailure(str(exc))
    return exc


# ---------------------------------------------------------------- test context

def time_limit(seconds):
    """Decorator: the test's time bound (run.py kills it after this many seconds)."""
    def mark(fn):
        fn.time_limit = seconds
        return fn
    return mark


class Ctx:
    """What a test function gets: brokers on scratch directories, client programs, reporting."""

    def __init__(self, name, binary, tmp, seed, rounds, verbose=False):
        self.name = name
        self.binary = binary
        self.tmp = tmp
        self.seed = seed
        self.rounds = rounds
        self.verbose = verbose
        self.brokers = []
        self.programs = Programs()
        self.repo = REPO
        self.here = HERE

    def broker(self, label='coney'):
        n = len(self.brokers)
        tag = label if n == 0 else '%s%d' % (label, n)
        b = Broker(self.binary, os.path.join(self.tmp, tag + '-data'),
                   os.path.join(self.tmp, tag + '.log'))
        self.brokers.append(b)
        return b

    def report(self, line):
        """A result line that run.py prints under the test's PASS/FAIL line."""
        print('REPORT %s' % line, flush=True)

    def log(self, line):
        if self.verbose:
            sys.stderr.write('    [%s] %s\n' % (self.name, line))
            sys.stderr.flush()

    def program(self, flavour, path, args=(), env=None, name=None):
        """Start a client program with the given pika flavour's python."""
        return self.programs.start(brokerlib.venv_python(flavour), path, args, env, name)

    def close(self):
        self.programs.close()
        for b in self.brokers:
            b.close()
