"""Declares many durable definitions fast, for the crash test of the definitions snapshot:
a hand-written AMQP 0-9-1 client (raw frames on a socket, no library) that pipelines
methods, so the broker's journal grows by megabytes in seconds.

Bursts b = 1, 2, ...: BURST durable queues PREFIX.<i> (long names, so records are large),
each bound to amq.direct with its name as key, all sent at once; the -oks are then read
(the broker answers in order). Every other burst also deletes the even-numbered queues of
the previous burst. Output (stdout, unbuffered), each line after the broker's -oks:
    READY
    D <first> <last>     queues first..last declared and bound (every -ok received)
    Q <i> <i> ...        deletion of these queues is about to be sent
    X <i> <i> ...        these queues deleted (queue.delete-ok received)
    CLOSED <reason>
"""
import os
import socket
import struct
import sys
import time

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
PREFIX = os.environ.get('PREFIX', 'raw')
BURST = int(os.environ.get('BURST', '500'))
LIMIT = int(os.environ.get('LIMIT', '200000'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '60'))
PAD = 'p' * 150


def frame(kind, channel, payload):
    return struct.pack('>BHI', kind, channel, len(payload)) + payload + b'\xce'


def method(channel, class_id, method_id, args):
    return frame(1, channel, struct.pack('>HH', class_id, method_id) + args)


def shortstr(s):
    return bytes([len(s)]) + s


def longstr(s):
    return struct.pack('>I', len(s)) + s


class Conn:
    def __init__(self, port=None):
        self.sock = socket.create_connection((HOST, port or PORT), timeout=10)
        self.buf = b''

    def read_method(self):
        """The next method frame: ((class, method), arguments)."""
        while True:
            while len(self.buf) < 7 or len(self.buf) < 8 + struct.unpack('>I', self.buf[3:7])[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError('closed by broker')
                self.buf += chunk
            kind, _, size = struct.unpack('>BHI', self.buf[:7])
            payload, self.buf = self.buf[7:7 + size], self.buf[8 + size:]
            if kind == 1:
                ids = struct.unpack('>HH', payload[:4])
                if ids in ((10, 50), (20, 40)):
                    raise ConnectionError('closed by broker: %r' % payload[4:80])
                return ids, payload[4:]

    def expect(self, ids):
        got, args = self.read_method()
        if got != ids:
            raise ConnectionError('expected %r, got %r' % (ids, got))
        return args

    def open(self):
        self.sock.sendall(b'AMQP\x00\x00\x09\x01')
        self.expect((10, 10))
        self.sock.sendall(method(0, 10, 11, longstr(b'') + shortstr(b'PLAIN')
                                 + longstr(b'\0guest\0guest') + shortstr(b'en_US')))
        args = self.expect((10, 30))
        channel_max, frame_max, _ = struct.unpack('>HIH', args[:8])
        self.sock.sendall(method(0, 10, 31, struct.pack('>HIH', channel_max, frame_max, 0))
                          + method(0, 10, 40, shortstr(b'/') + shortstr(b'') + b'\0'))
        self.expect((10, 41))
        self.sock.sendall(method(1, 20, 10, shortstr(b'')))
        self.expect((20, 11))


def name(i, prefix=None):
    return ('%s.%07d.%s' % (prefix or PREFIX, i, PAD)).encode()


def declare(i):
    q = name(i)
    return (method(1, 50, 10, struct.pack('>H', 0) + shortstr(q) + bytes([0b10]) + longstr(b''))
            + method(1, 50, 20, struct.pack('>H', 0) + shortstr(q) + shortstr(b'amq.direct')
                     + shortstr(q) + b'\0' + longstr(b'')))


def delete(i):
    return method(1, 50, 40, struct.pack('>H', 0) + shortstr(name(i)) + b'\0')


def run(c):
    deadline = time.monotonic() + TIME_LIMIT
    i = 0
    burst = 0
    print('READY', flush=True)
    while i < LIMIT and time.monotonic() < deadline:
        burst += 1
        first = i + 1
        out = [declare(n) for n in range(first, first + BURST)]
        gone = list(range(first - BURST + 1, first, 2)) if burst % 2 == 0 and first > BURST else []
        out += [delete(n) for n in gone]
        if gone:
            print('Q %s' % ' '.join(map(str, gone)), flush=True)
        c.sock.sendall(b''.join(out))
        for _ in range(BURST):
            c.expect((50, 11))
            c.expect((50, 21))
        i = first + BURST - 1
        print('D %d %d' % (first, i), flush=True)
        for _ in gone:
            c.expect((50, 41))
        if gone:
            print('X %s' % ' '.join(map(str, gone)), flush=True)
    print('CLOSED limit', flush=True)


if __name__ == '__main__':
    try:
        conn = Conn()
        conn.open()
        run(conn)
    except Exception as e:  # noqa: BLE001  (the broker was killed)
        print('CLOSED %r' % (e,), flush=True)
    sys.exit(0)
