"""Brokers and clients for the Python tests and scripts (tests/durability, tests/scenarios,
scripts/soak.py, scripts/fuzz-seeds.py): free loopback ports, a coney process (start, wait
until it accepts, stop with SIGTERM or crash with SIGKILL), a private RabbitMQ node through
scripts/rabbitmq.sh, /proc readers for a broker's memory and file descriptors, pika
connections, and the environment of client programs.

Standard library only at import time (tests/scenarios/run.py runs under any python3); pika is
imported by the functions that use it, so the module serves pika 0.13 and 1.x alike.

As a command, for the shell scripts (scripts/lib.sh):

    python3 tests/lib/brokerlib.py free-port

CONEY_TEST_PORTS=LOW-HIGH (e.g. 6000-6099) in the environment makes every free port handed
out, here and through scripts/lib.sh (rabbitmq.sh's epmd and distribution ports too), one of
that range.
"""
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Every broker a test starts listens on loopback only.
HOST = '127.0.0.1'


class BrokerError(Exception):
    """A broker did not start, or did not stop the way it must."""


# ---------------------------------------------------------------- ports

def free_port():
    """A loopback TCP port that is free now: the kernel's choice, or with
    CONEY_TEST_PORTS=LOW-HIGH set (runs sharing a machine, each in its own range) the next
    free one of that range, round robin across processes (a cursor file under /tmp, locked),
    so a port handed out but not yet bound is not handed out again before the range wraps."""
    span = os.environ.get('CONEY_TEST_PORTS')
    if not span:
        with socket.socket() as s:
            s.bind((HOST, 0))
            return s.getsockname()[1]
    import fcntl
    import tempfile
    try:
        low, high = (int(x) for x in span.split('-'))
    except ValueError:
        raise BrokerError('CONEY_TEST_PORTS=%r is not LOW-HIGH' % span) from None
    if not 0 < low <= high < 65536:
        raise BrokerError('CONEY_TEST_PORTS=%r is not LOW-HIGH' % span)
    cursor = os.path.join(tempfile.gettempdir(), 'coney-test-ports.%d-%d' % (low, high))
    with open(cursor, 'a+') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        try:
            nxt = int(f.read().strip() or low)
        except ValueError:
            nxt = low
        count = high - low + 1
        for i in range(count):
            port = low + (nxt - low + i) % count
            with socket.socket() as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    continue
            f.seek(0)
            f.truncate()
            f.write(str(low + (port - low + 1) % count))
            return port
    raise BrokerError('no free port in CONEY_TEST_PORTS=%s' % span)


def port_open(port, timeout=1):
    """True when something accepts TCP connections on HOST:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port, timeout, proc=None):
    """True once HOST:port accepts within `timeout` seconds; False at the time limit, or as
    soon as `proc` (the Popen of the server, if given) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if port_open(port):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- coney

class Coney:
    """One coney process at a time on a fixed port and data directory, restartable on them.

    Its output is appended to `log_path` (each start marked by a `==== start N` line), or
    goes to this process's stdout and stderr when `log_path` is None."""

    def __init__(self, binary, data_dir, log_path, port=None, log_level='info', args=()):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = port or free_port()
        self.log_level = log_level
        self.args = list(args)
        self.proc = None
        self.starts = 0
        self._log_offset = 0
        os.makedirs(data_dir, exist_ok=True)

    def argv(self):
        return [self.binary, '--listen', '%s:%d' % (HOST, self.port), '--data-dir', self.data_dir,
                '--log-level', self.log_level] + self.args

    def start(self, timeout=15):
        """Start it and wait (bounded) until it accepts TCP connections; returns self."""
        if self.proc is not None:
            raise BrokerError('coney already running')
        self.starts += 1
        if self.log_path is None:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL)
        else:
            with open(self.log_path, 'ab') as log:
                log.write(b'==== start %d\n' % self.starts)
                log.flush()
                self._log_offset = log.tell()
                self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
        if wait_port(self.port, timeout, self.proc):
            return self
        rc = self.proc.poll()
        if rc is not None:
            self.proc = None
            raise BrokerError('coney exited with status %s at start %d (port %d)\n%s'
                              % (rc, self.starts, self.port, self.log_tail()))
        raise BrokerError('coney did not accept connections on port %d within %ss\n%s'
                          % (self.port, timeout, self.log_tail()))

    def stop(self, timeout=10):
        """Clean stop: SIGTERM, then its exit status once it has exited. One that does not
        exit within `timeout` seconds is killed (SIGKILL) and reported as a BrokerError."""
        if self.proc is None:
            raise BrokerError('coney not running')
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
            raise BrokerError('coney did not exit within %ss of SIGTERM\n%s'
                              % (timeout, self.log_tail()))
        self.proc = None
        return rc

    def kill(self):
        """Crash: SIGKILL; returns the exit status."""
        if self.proc is None:
            raise BrokerError('coney not running')
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        self.proc = None
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def close(self):
        """Leave nothing running (for every exit path)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def log_text(self, whole=False):
        """The log of the current start (or all of it)."""
        if self.log_path is None:
            return ''
        try:
            with open(self.log_path, 'rb') as f:
                if not whole:
                    f.seek(self._log_offset)
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def log_tail(self, n=30):
        lines = self.log_text(whole=True).splitlines()[-n:]
        return ('    --- coney log (%s) ---\n' % self.log_path
                + ''.join('    | %s\n' % l for l in lines))


# ---------------------------------------------------------------- RabbitMQ

class RabbitMQ:
    """A private RabbitMQ node on HOST:port with every file under `directory`, started and
    stopped by scripts/rabbitmq.sh (which bounds both)."""

    SCRIPT = os.path.join(REPO, 'scripts', 'rabbitmq.sh')

    def __init__(self, directory, port=None):
        self.directory = directory
        self.port = port or free_port()
        self.pid = None

    def start(self):
        """Start the node and wait until it accepts AMQP; returns self (`pid`: beam.smp's)."""
        cp = subprocess.run(['bash', self.SCRIPT, 'start', str(self.port), self.directory],
                            stdin=subprocess.DEVNULL, capture_output=True)
        if cp.returncode != 0:
            raise BrokerError('rabbitmq.sh start %d failed (rc=%s): %s'
                              % (self.port, cp.returncode,
                                 cp.stderr.decode(errors='replace').strip()[-2000:]))
        self.pid = int(cp.stdout.decode().strip().splitlines()[-1])
        return self

    def stop(self):
        subprocess.run(['bash', self.SCRIPT, 'stop', self.directory], stdin=subprocess.DEVNULL,
                       capture_output=True)
        self.pid = None


# ---------------------------------------------------------------- /proc

def proc_status_kb(pid, field):
    """A kB field of /proc/PID/status (e.g. VmRSS, VmHWM), or None if it has none; OSError
    once the process is gone."""
    with open('/proc/%s/status' % pid) as f:
        for line in f:
            name, _, value = line.partition(':')
            if name == field:
                return int(value.split()[0])
    return None


def proc_rss_kb(pid):
    """Resident set size in KiB (0 for a process without one)."""
    return proc_status_kb(pid, 'VmRSS') or 0


def proc_fd_count(pid):
    return len(os.listdir('/proc/%s/fd' % pid))


def proc_fd_targets(pid):
    """{fd: what it refers to}, e.g. a path ending in ' (deleted)' or 'socket:[N]'."""
    out = {}
    for fd in os.listdir('/proc/%s/fd' % pid):
        try:
            out[int(fd)] = os.readlink('/proc/%s/fd/%s' % (pid, fd))
        except OSError:
            pass
    return out


# ---------------------------------------------------------------- clients

def pika_params(port, host=HOST, name=None, **kw):
    """pika.ConnectionParameters with bounded waits: one connection attempt, a 5 s socket
    timeout and a 30 s blocked-connection timeout unless given; `name` becomes the
    connection_name client property."""
    import pika
    kw.setdefault('connection_attempts', 1)
    kw.setdefault('socket_timeout', 5)
    kw.setdefault('blocked_connection_timeout', 30)
    if name is not None:
        kw['client_properties'] = {'connection_name': name}
    return pika.ConnectionParameters(host=host, port=int(port), **kw)


def pika_connect(port, host=HOST, **kw):
    """A pika BlockingConnection with pika_params(port, host, **kw)."""
    import pika
    return pika.BlockingConnection(pika_params(port, host, **kw))


def reply_code(exc):
    """The AMQP reply code of a pika exception (pika 0.13 has it only in args)."""
    code = getattr(exc, 'reply_code', None)
    if code is None and getattr(exc, 'args', None):
        code = exc.args[0]
    return code


def program_env(port, host=HOST, extra=None):
    """The environment of a client program (the tutorial programs and the durability
    programs read AMQP_HOST and AMQP_PORT), unbuffered so its lines can be awaited."""
    env = dict(os.environ)
    env.update(AMQP_HOST=host, AMQP_PORT=str(port), PYTHONUNBUFFERED='1',
               PYTHONDONTWRITEBYTECODE='1')
    for k, v in (extra or {}).items():
        env[k] = str(v)
    return env


def venv_python(flavour):
    """The interpreter of a pika flavour ('pika1', 'pika013'): $PIKA1_PYTHON or
    $PIKA013_PYTHON, else the virtualenv scripts/pyenv.sh makes."""
    return (os.environ.get(flavour.upper() + '_PYTHON')
            or os.path.join(REPO, '.venv', flavour, 'bin', 'python'))


def main(argv):
    if argv == ['free-port']:
        print(free_port())
        return 0
    sys.stderr.write('usage: %s free-port\n' % os.path.basename(__file__))
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
