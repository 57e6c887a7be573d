"""Tiny stdlib-only harness for the scenario checks.

A check (tests/scenarios/checks/*.py) runs the tutorial's producer and
consumer programs of one pika flavour (tests/scenarios/<flavour>/...) as
subprocesses with that flavour's Python, waits for awaited events (printed
lines, process exits) with bounded timeouts, and raises ScenarioFailure with
a clear message when the observed behaviour is wrong.

Usage inside a check:

    from harness import main
    def scenario(ctx):
        recv = ctx.start('hello_world/receive.py', env={'QUEUE': q})
        recv.wait_line(r'Waiting for messages')
        ...
    if __name__ == '__main__':
        main(scenario)

Environment:
    AMQP_HOST, AMQP_PORT       broker address (default 127.0.0.1:5672)
    PIKA1_PYTHON, PIKA013_PYTHON
                               interpreter per flavour (default
                               <repo>/.venv/<flavour>/bin/python)
    SCENARIO_VERBOSE=1         echo the programs' output while running
"""

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lib'))
import brokerlib  # noqa: E402  (flavour interpreters, client program environments)

FLAVOURS = ('pika1', 'pika013')


class ScenarioFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise ScenarioFailure(message)


def parse_bytes_repr(text):
    """Parse the %r of a bytes body as printed by the tutorial programs."""
    value = ast.literal_eval(text)
    if isinstance(value, str):
        value = value.encode()
    return value


class Program:
    """A running tutorial program whose stdout lines are collected."""

    def __init__(self, ctx, name, argv, env):
        self.ctx = ctx
        self.name = name
        self.argv = argv
        self._lines = []
        self._err = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=os.path.dirname(argv[2]))
        self._t_out = threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True)
        self._t_err = threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _read(self, stream, is_out):
        for raw in iter(stream.readline, b''):
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            if os.environ.get('SCENARIO_VERBOSE'):
                sys.stderr.write('    [%s%s] %s\n' % (self.name, '' if is_out else ' stderr', line))
            with self._cond:
                (self._lines if is_out else self._err).append(line)
                self._cond.notify_all()
        with self._cond:
            if is_out:
                self._eof = True
            self._cond.notify_all()

    # -- observation ---------------------------------------------------
    def lines(self):
        with self._cond:
            return list(self._lines)

    def matches(self, pattern):
        rx = re.compile(pattern)
        return [m for m in (rx.search(l) for l in self.lines()) if m]

    def wait_line(self, pattern, timeout=15, count=1, what=None):
        """Wait until `count` stdout lines match `pattern`; return the matches."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in (rx.search(l) for l in self._lines) if m]
                if len(found) >= count:
                    return found[:count] if count > 1 else found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    break
                self._cond.wait(min(remaining, 0.5))
        rc = self.proc.poll()
        raise ScenarioFailure(
            '%s: %s (wanted %d line(s) matching %r, saw %d, within %ss; %s)\n%s'
            % (self.name, what or 'expected output did not appear', count, pattern,
               len(found), timeout,
               'process exited with %s' % rc if rc is not None else 'process still running',
               self.transcript()))

    def wait_exit(self, timeout=15, expect_rc=0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ScenarioFailure('%s: did not exit within %ss\n%s'
                                  % (self.name, timeout, self.transcript()))
        self._t_out.join(5)
        self._t_err.join(5)
        if expect_rc is not None and rc != expect_rc:
            raise ScenarioFailure('%s: exited with %s, expected %s\n%s'
                                  % (self.name, rc, expect_rc, self.transcript()))
        return rc

    def transcript(self, limit=40):
        with self._cond:
            out = self._lines[-limit:]
            err = self._err[-limit:]
        text = '    --- %s stdout ---\n' % self.name + ''.join('    | %s\n' % l for l in out)
        if err:
            text += '    --- %s stderr ---\n' % self.name + ''.join('    | %s\n' % l for l in err)
        return text.rstrip('\n')

    # -- control -------------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def interrupt(self, timeout=10):
        """Ctrl-C, as the tutorial says; SIGKILL if it does not exit in time."""
        self.signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


class Context:
    def __init__(self, flavour):
        self.flavour = flavour
        self.python = brokerlib.venv_python(flavour)
        self.dir = os.path.join(HERE, flavour)
        self.host = os.environ.get('AMQP_HOST', '127.0.0.1')
        self.port = os.environ.get('AMQP_PORT', '5672')
        # unique per run, so repeated runs on one broker never interfere
        self.run_id = '%s.%d.%s' % (flavour, os.getpid(), uuid.uuid4().hex[:8])
        self.programs = []
        self.cleanup_queues = []
        self.cleanup_exchanges = []
        if not os.access(self.python, os.X_OK):
            raise ScenarioFailure('no python for flavour %s at %s (run scripts/pyenv.sh)'
                                  % (flavour, self.python))

    def name(self, base):
        return '%s.%s' % (base, self.run_id)

    def env(self, extra=None):
        return brokerlib.program_env(self.port, self.host, extra)

    def start(self, program, args=(), env=None, name=None):
        path = os.path.join(self.dir, program)
        check(os.path.exists(path), 'missing program %s' % path)
        argv = [self.python, '-u', path] + [str(a) for a in args]
        p = Program(self, name or program, argv, self.env(env))
        self.programs.append(p)
        return p

    def run(self, program, args=(), env=None, name=None, timeout=20, expect_rc=0):
        """Run a program to completion and return it."""
        p = self.start(program, args, env, name)
        p.wait_exit(timeout, expect_rc)
        return p

    def admin(self, *args, timeout=20):
        """Run admin.py (management helpers) with this flavour's pika; JSON result."""
        argv = [self.python, os.path.join(HERE, 'admin.py')] + [str(a) for a in args]
        try:
            cp = subprocess.run(argv, env=self.env(), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ScenarioFailure('admin.py %s timed out' % ' '.join(map(str, args)))
        if cp.returncode != 0:
            raise ScenarioFailure('admin.py %s failed (rc=%s): %s'
                                  % (' '.join(map(str, args)), cp.returncode,
                                     cp.stderr.decode(errors='replace').strip()[-2000:]))
        return json.loads(cp.stdout.decode().strip().splitlines()[-1])

    def queue_counts(self, queue):
        return self.admin('count', queue)

    def wait_counts(self, queue, messages=None, consumers=None, timeout=5, what=''):
        """Poll the queue's counts (passive declare) until they are as expected."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.queue_counts(queue)
            if ((messages is None or got['messages'] == messages) and
                    (consumers is None or got['consumers'] == consumers)):
                return got
            if time.monotonic() > deadline:
                raise ScenarioFailure(
                    '%squeue %s: expected messages=%s consumers=%s, got messages=%s consumers=%s'
                    % (what + ': ' if what else '', queue, messages, consumers,
                       got['messages'], got['consumers']))
            time.sleep(0.1)

    def close(self):
        for p in self.programs:
            if p.alive():
                p.kill()
        if self.cleanup_queues or self.cleanup_exchanges:
            args = ['cleanup']
            args += ['q:' + q for q in self.cleanup_queues]
            args += ['x:' + x for x in self.cleanup_exchanges]
            try:
                self.admin(*args)
            except Exception as e:  # cleanup must not mask the real result
                sys.stderr.write('warning: cleanup failed: %s\n' % e)


def main(scenario):
    """Entry point of a check: `check.py FLAVOUR`. Exit 0 on success."""
    if len(sys.argv) != 2 or sys.argv[1] not in FLAVOURS:
        sys.stderr.write('usage: %s {%s}\n' % (sys.argv[0], '|'.join(FLAVOURS)))
        sys.exit(2)
    ctx = None
    try:
        ctx = Context(sys.argv[1])
        scenario(ctx)
    except ScenarioFailure as e:
        print('FAILED: %s' % e)
        sys.exit(1)
    except Exception as e:  # a bug in the check itself still fails loudly
        import traceback
        traceback.print_exc()
        print('FAILED: unexpected %s: %s' % (type(e).__name__, e))
        sys.exit(1)
    finally:
        if ctx is not None:
            ctx.close()
    print('OK')
    sys.exit(0)
