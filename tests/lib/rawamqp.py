"""AMQP 0-9-1 bytes written by hand (never coney's codec): frames, short and long strings, a
reader of method frames from a socket, and a hand-made connection handshake. Used by
scripts/soak.py (its idle connections) and scripts/fuzz-seeds.py (frames of a capture).
"""
import socket
import struct

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = b"\xce"


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def method_frame(class_id, method_id, args, channel=0):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def shortstr(s):
    return bytes([len(s)]) + s


def longstr(s):
    return struct.pack(">I", len(s)) + s


START_OK = method_frame(10, 11, longstr(b"") + shortstr(b"PLAIN") + longstr(b"\0guest\0guest") + shortstr(b"en_US"))
OPEN = method_frame(10, 40, shortstr(b"/") + shortstr(b"") + b"\0")
CLOSE = method_frame(10, 50, struct.pack(">H", 200) + shortstr(b"bye") + struct.pack(">HH", 0, 0))


def read_method(sock, buf):
    """Reads frames until a method frame; returns ((class, method), payload, rest of buf)."""
    while True:
        while len(buf) < 7:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by broker")
            buf += chunk
        kind, _, size = struct.unpack(">BHI", buf[:7])
        while len(buf) < 8 + size:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by broker")
            buf += chunk
        payload, buf = buf[7:7 + size], buf[8 + size:]
        if kind == 1:
            return struct.unpack(">HH", payload[:4]), payload, buf


def handshake(port, host="127.0.0.1"):
    """Connects and opens an AMQP connection by hand; heartbeat 0 so it may stay idle."""
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(PROTOCOL_HEADER)
    ids, _, buf = read_method(s, b"")
    assert ids == (10, 10), ids
    s.sendall(START_OK)
    ids, payload, buf = read_method(s, buf)
    assert ids == (10, 30), ids
    channel_max, frame_max, _ = struct.unpack(">HIH", payload[4:12])
    s.sendall(method_frame(10, 31, struct.pack(">HIH", channel_max, frame_max, 0)) + OPEN)
    ids, _, buf = read_method(s, buf)
    assert ids == (10, 41), ids
    return s
