"""Durable definitions as a journal and snapshots: a crash while a snapshot is being built,
and a data directory written by coney before the journal existed."""
import os
import re
import struct
import sys
import time

import pika

from durlib import as_failure, check, drain, harness, queue_count, time_limit

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'programs')
sys.path.insert(0, PROGRAMS)
import raw_declarer as raw  # noqa: E402  (frames written by hand, shared with the program)


def read_frame(c):
    """The next frame of a raw connection: (type, channel, payload)."""
    while len(c.buf) < 7 or len(c.buf) < 8 + struct.unpack('>I', c.buf[3:7])[0]:
        chunk = c.sock.recv(65536)
        if not chunk:
            raise ConnectionError('closed by broker')
        c.buf += chunk
    kind, channel, size = struct.unpack('>BHI', c.buf[:7])
    payload, c.buf = c.buf[7:7 + size], c.buf[8 + size:]
    return kind, channel, payload


def read_method(c):
    while True:
        kind, channel, payload = read_frame(c)
        if kind == 1:
            return channel, struct.unpack('>HH', payload[:4]), payload[4:]


def passive(channel, q):
    return raw.method(channel, 50, 10, struct.pack('>H', 0) + raw.shortstr(q) + b'\x01' + raw.longstr(b''))


def publish(q):
    """basic.publish to amq.direct with key q, mandatory, with an empty body."""
    return (raw.method(1, 60, 40, struct.pack('>H', 0) + raw.shortstr(b'amq.direct') + raw.shortstr(q) + b'\x01')
            + raw.frame(2, 1, struct.pack('>HHQH', 60, 0, 0, 0)))


def verify(port, present, absent):
    """Checks by pipelined raw methods that every queue in `present` exists and is bound to
    amq.direct by its name, and that none in `absent` exists. Returns (missing, unbound, back)."""
    c = raw.Conn(port)
    c.open()
    missing, unbound, back = [], [], []
    for at in range(0, len(present), 1000):
        chunk = present[at:at + 1000]
        c.sock.sendall(b''.join(passive(1, q) for q in chunk))
        for q in chunk:
            channel, ids, args = read_method(c)
            if ids != (50, 11):
                missing.append(q)
                return missing, unbound, back
        c.sock.sendall(b''.join(publish(q) for q in chunk) + passive(1, chunk[0]))
        while True:
            channel, ids, args = read_method(c)
            if ids == (60, 50):
                code, = struct.unpack('>H', args[:2])
                rest = args[2:]
                rest = rest[1 + rest[0]:]          # reply text
                rest = rest[1 + rest[0]:]          # exchange
                unbound.append(rest[1:1 + rest[0]])
            elif ids == (50, 11):
                break
    for at in range(0, len(absent), 200):
        chunk = absent[at:at + 200]
        chans = range(2, 2 + len(chunk))
        c.sock.sendall(b''.join(raw.method(ch, 20, 10, raw.shortstr(b'')) for ch in chans))
        for _ in chunk:
            check(read_method(c)[1] == (20, 11), 'channel.open-ok expected')
        c.sock.sendall(b''.join(passive(ch, q) for ch, q in zip(chans, chunk)))
        for _ in chunk:
            channel, ids, args = read_method(c)
            if ids == (50, 11):
                back.append(chunk[channel - 2])
                c.sock.sendall(raw.method(channel, 20, 40, struct.pack('>H', 200) + raw.shortstr(b'')
                                          + struct.pack('>HH', 0, 0)))
                check(read_method(c)[1] == (20, 41), 'channel.close-ok expected')
            else:
                check(ids == (20, 40) and struct.unpack('>H', args[:2])[0] == 404,
                      'passive declare of a deleted queue: %r %r' % (ids, args[:60]))
                c.sock.sendall(raw.method(channel, 20, 41, b''))
    c.sock.close()
    return missing, unbound, back


def numbers(prog):
    """(declared and bound, deletion requested, deletion answered) from the program's output."""
    declared, requested, deleted = [], set(), set()
    for line in prog.lines():
        p = line.split()
        if p and p[0] == 'D':
            declared += range(int(p[1]), int(p[2]) + 1)
        elif p and p[0] == 'Q':
            requested.update(int(x) for x in p[1:])
        elif p and p[0] == 'X':
            deleted.update(int(x) for x in p[1:])
    return declared, requested, deleted


@time_limit(150)
def test_crash_during_definitions_snapshot(t):
    """Three rounds on one data directory: a hand-written AMQP client pipelines durable
    queue declares, each followed by a bind to amq.direct (queue names of 170 bytes, so the
    journal grows by megabytes), deleting half of the queues of every other burst; as soon
    as the broker logs that it is building a definitions snapshot (the journal outgrew the
    last one), it is killed with SIGKILL, the temporary snapshot file still there. After
    each restart every queue whose declare and bind were answered and whose deletion was
    not exists and routes (a mandatory publish to its name is not returned), every queue
    whose deletion was answered is gone. Proves a crash in the middle of a snapshot loses and resurrects nothing.
    Finally a snapshot is let finish (folding every journal the crashes left) and the same
    holds after a clean restart."""
    b = t.broker().start()
    hits = 0
    all_declared, all_deleted = [], set()
    for r in (1, 2, 3):
        prefix = 'snap%d' % r
        env = b.env()
        env.update(PREFIX=prefix, BURST='400', TIME_LIMIT='60')
        prog = t.program('pika1', os.path.join(PROGRAMS, 'raw_declarer.py'), env=env,
                         name='raw declarer round %d' % r)
        try:
            prog.wait_line(r'^READY$', timeout=10)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        deadline = time.monotonic() + 60
        while 'building snapshot' not in b.log_text():
            check(time.monotonic() < deadline, 'round %d: no snapshot started within 60s' % r)
            check(prog.alive(), 'round %d: the declarer stopped\n%s' % (r, prog.transcript()))
            time.sleep(0.001)
        time.sleep((r - 1) * 0.005)     # at the start of the snapshot, and a little later
        b.kill()
        tmp = os.path.join(b.data_dir, 'definitions.dat.tmp')
        mid = os.path.exists(tmp)
        hits += mid
        files = sorted(os.listdir(b.data_dir))
        try:
            prog.wait_exit(15)
        except harness.ScenarioFailure as e:
            raise as_failure(e)
        declared, requested, deleted = numbers(prog)
        names = lambda ns: [raw.name(i, prefix) for i in ns]  # noqa: E731
        all_declared += names(n for n in declared if n not in requested)
        all_deleted |= set(names(deleted))
        b.start()
        rec = b.recovery()
        missing, unbound, back = verify(b.port, all_declared, sorted(all_deleted))
        t.report('round %d: SIGKILL %s; %d pairs declared, %d deleted; files at the kill: %s; '
                 'missing %d, unbound %d, deleted but back %d (recovery: %d messages)'
                 % (r, 'while the snapshot was being written' if mid else 'after the snapshot',
                    len(declared), len(deleted), ' '.join(files), len(missing), len(unbound),
                    len(back), rec['messages']))
        check(declared, 'round %d: nothing was declared' % r)
        check(not missing, 'round %d: declared queues missing after the crash: %s' % (r, missing[:3]))
        check(not unbound, 'round %d: bindings lost after the crash: %s' % (r, unbound[:3]))
        check(not back, 'round %d: deleted queues came back after the crash: %s' % (r, back[:3]))
    check(hits >= 1, 'no round was killed while a snapshot was being written: proves nothing')
    # Then a snapshot is let finish: it folds every journal left by the crashes.
    env = b.env()
    env.update(PREFIX='snap4', BURST='400', TIME_LIMIT='60')
    prog = t.program('pika1', os.path.join(PROGRAMS, 'raw_declarer.py'), env=env, name='raw declarer 4')
    deadline = time.monotonic() + 60
    while not re.search(r'snapshot \d+ written', b.log_text()):
        check(time.monotonic() < deadline, 'no snapshot finished within 60s\n%s' % b.log_tail())
        time.sleep(0.01)
    prog.kill()
    b.restart()
    declared, requested, deleted = numbers(prog)
    all_declared += [raw.name(i, 'snap4') for i in declared if i not in requested]
    all_deleted |= {raw.name(i, 'snap4') for i in deleted}
    missing, unbound, back = verify(b.port, all_declared, sorted(all_deleted))
    journals = sorted(n for n in os.listdir(b.data_dir) if n.endswith('.jnl'))
    t.report('after a finished snapshot and a clean restart: %d queues checked, missing %d, '
             'unbound %d, back %d; journals %s'
             % (len(all_declared), len(missing), len(unbound), len(back), ' '.join(journals)))
    check(not missing and not unbound and not back, 'definitions wrong after the final snapshot')
    check(len(journals) <= 2, 'the snapshot did not fold the older journals away: %s' % journals)
    b.term()


def crc32c(data):
    c = 0xffffffff
    for x in data:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff


def record(kind, payload):
    """A store record as coney writes it: length, CRC-32C of kind and payload, kind, payload."""
    return struct.pack('>II', len(payload), crc32c(bytes([kind]) + payload)) + bytes([kind]) + payload


def lstr(b):
    return struct.pack('>I', len(b)) + b


@time_limit(30)
def test_data_dir_from_before_the_journal_is_converted(t):
    """A data directory as coney wrote it before this format: definitions.dat of format
    version 1 (a durable topic exchange, a durable queue with store id 3 bound to it) and a
    version 1 message segment numbered 1 holding two persistent messages for that queue,
    written here byte by byte. The broker starts on it: the exchange, queue and binding
    exist and route, both messages come back in order; definitions.dat is rewritten in
    format version 2 with a journal beside it; and after a clean restart (with a queue
    declared in between) everything is still there."""
    b = t.broker()
    d = b.data_dir
    defs = b'CONEYDEF' + struct.pack('>II', 1, 0)
    defs += record(1, struct.pack('>I', 4))
    defs += record(2, lstr(b'old.logs') + lstr(b'topic') + b'\x00\x00' + lstr(b''))
    defs += record(3, lstr(b'old.queue') + struct.pack('>I', 3) + b'\x00' + lstr(b''))
    defs += record(4, lstr(b'old.logs') + b'\x00' + lstr(b'old.queue') + lstr(b'a.#') + lstr(b''))
    with open(os.path.join(d, 'definitions.dat'), 'wb') as f:
        f.write(defs)
    os.makedirs(os.path.join(d, 'msgs'))
    seg = b'CONEYSEG' + struct.pack('>II', 1, 0)
    props = b'\x10\x00\x02'        # delivery_mode 2
    for i, body in enumerate((b'old one', b'old two')):
        data = b'old.logs' + b'a.b' + props + body
        payload = (struct.pack('>QBH', (1 << 32) | i, 1, 1) + struct.pack('>I', 3)
                   + struct.pack('>BBI', 8, 3, len(props)) + data)
        seg += record(1, payload)
    with open(os.path.join(d, 'msgs', '0000000001.seg'), 'wb') as f:
        f.write(seg)
    b.start()
    rec = b.recovery()
    with open(os.path.join(d, 'definitions.dat'), 'rb') as f:
        version = struct.unpack('>I', f.read(12)[8:12])[0]
    journals = [n for n in os.listdir(d) if n.endswith('.jnl')]
    t.report('recovered %r; definitions.dat now version %d, journals %s' % (rec, version, journals))
    check(rec['messages'] == 2, 'expected the 2 old messages, recovered %d' % rec['messages'])
    check(version == 2, 'definitions.dat still in version %d' % version)
    check(journals, 'no journal beside the converted snapshot')
    conn = b.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish('old.logs', 'a.c', b'new', pika.BasicProperties(delivery_mode=2), mandatory=True)
    ch.queue_declare('new.queue', durable=True)
    conn.close()
    b.restart()
    got = drain(b, 'old.queue', expect=3)
    check([g.body for g in got] == [b'old one', b'old two', b'new'],
          'old.queue holds %r' % [g.body for g in got])
    check(queue_count(b, 'new.queue') == 0, 'the queue declared after the conversion is gone')
    b.term()
