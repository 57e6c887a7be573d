#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from real AMQP bytes.

Two sources, neither of them coney's own encoder (so the seeds test it rather than mirror it):
  * pika's codec: every method of the spec, content headers with all 14 properties, tables;
  * a capture: a pika session (declare, bind, publish with confirms, get, consume, ack, nack,
    reject, recover, tx, purge, delete) against a coney started here, through a small TCP
    proxy on loopback that records both directions.

Usage: .venv/pika1/bin/python scripts/fuzz-seeds.py [--coney target/release/coney] [--out fuzz/corpus]
Files are named seed-*; the corpus stays well under 200 files and 1 MiB.
"""
import argparse
import datetime
import decimal
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

import pika
import pika.frame
import pika.spec
from pika.data import encode_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from brokerlib import Coney, pika_params  # noqa: E402
from rawamqp import PROTOCOL_HEADER, frame  # noqa: E402
# Index into FRAME_MAX_CHOICES of fuzz_targets/frame.rs: 0 = no limit, 4 = 131072.
FRAME_MAX_NONE, FRAME_MAX_CONEY = 0, 4
SEED_BYTES_MAX = 16 * 1024

TABLE_PARAMS = {"server_properties", "client_properties", "arguments"}
BOOL_PARAMS = {
    "passive", "durable", "exclusive", "auto_delete", "nowait", "internal", "if_unused",
    "if_empty", "no_local", "no_ack", "mandatory", "immediate", "redelivered", "multiple",
    "requeue", "global_qos", "active", "insist", "write", "read",
}
INT_PARAMS = {
    "version_major": 0, "version_minor": 9, "channel_max": 2047, "frame_max": 131072,
    "heartbeat": 60, "reply_code": 404, "class_id": 50, "method_id": 10, "ticket": 0,
    "prefetch_size": 0, "prefetch_count": 10, "delivery_tag": 42, "message_count": 3,
    "consumer_count": 1,
}
STR_PARAMS = {"mechanisms": "PLAIN AMQPLAIN", "response": "\0guest\0guest", "locales": "en_US",
              "type": "topic", "reply_text": "NOT_FOUND - no queue 'q' in vhost '/'"}

RICH_TABLE = {
    "product": "pika", "version": "1.3.2", "int": 7, "negative": -3, "big": 2**40,
    "bool": True, "decimal": decimal.Decimal("1.25"),
    "when": datetime.datetime(2024, 1, 2, 3, 4, 5), "none": None, "bytes": b"\x00\xff",
    "nested": {"capabilities": {"publisher_confirms": True, "basic.nack": True}, "list": [1, "two", [decimal.Decimal("-3.5"), {"x": False}]]},
    "x-message-ttl": 60000, "x-max-length": 1000, "x-dead-letter-exchange": "dlx",
}


def rich_method(cls):
    """An instance of a pika method class with every argument set to a non-default value."""
    import inspect
    kwargs = {}
    for name in list(inspect.signature(cls.__init__).parameters)[1:]:
        if name in TABLE_PARAMS:
            kwargs[name] = RICH_TABLE
        elif name in BOOL_PARAMS:
            kwargs[name] = True
        elif name in INT_PARAMS:
            kwargs[name] = INT_PARAMS[name]
        else:
            kwargs[name] = STR_PARAMS.get(name, name.replace("_", "-") + ".seed")
    return cls(**kwargs)


def split_frames(stream):
    """(type, channel, payload) for each whole frame of `stream`; stops at anything malformed."""
    out, at = [], 0
    while at + 8 <= len(stream):
        kind, channel, size = struct.unpack(">BHI", stream[at:at + 7])
        end = at + 7 + size
        if end >= len(stream) or stream[end] != 0xCE:
            break
        out.append((kind, channel, stream[at + 7:end]))
        at = end + 1
    return out


class Proxy:
    """Forwards one client at a time to the broker and records both directions."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.captures = []  # (client_to_server, server_to_client) per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            c2s, s2c = bytearray(), bytearray()
            self.captures.append((c2s, s2c))
            threading.Thread(target=self._pump, args=(client, server, c2s), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, s2c), daemon=True).start()

    @staticmethod
    def _pump(src, dst, record):
        src.settimeout(30)
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            record.extend(data)
            dst.sendall(data)


def pika_session(port):
    """Drives most of the protocol surface. Broker refusals are fine: they are frames too."""
    params = pika_params(
        port, blocked_connection_timeout=10, socket_timeout=10,
        client_properties={"connection_name": "fuzz-seeds", "information": RICH_TABLE["nested"]})
    conn = pika.BlockingConnection(params)
    props = pika.BasicProperties(
        content_type="text/plain", content_encoding="utf-8",
        headers={"k": "v", "n": 1, "deep": {"list": [1, 2, {"b": True}]}},
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="amq.rabbitmq.reply-to",
        expiration="60000", message_id="msg-1", timestamp=1_700_000_000, type="seed",
        user_id="guest", app_id="fuzz-seeds", cluster_id="c1")

    def step(ch, fn):
        try:
            fn(ch)
        except pika.exceptions.AMQPChannelError as e:
            print(f"  (channel refused: {e})")
            return conn.channel()
        return ch

    ch = conn.channel()
    ch.confirm_delivery()
    ch = step(ch, lambda c: c.exchange_declare("seed.topic", "topic", durable=True))
    ch = step(ch, lambda c: c.exchange_declare("seed.headers", "headers", arguments={"x": 1}))
    ch = step(ch, lambda c: c.queue_declare("seed.q", durable=True,
                                            arguments={"x-max-length": 1000, "x-message-ttl": 60000}))
    ch = step(ch, lambda c: c.queue_bind("seed.q", "seed.topic", routing_key="a.*.#"))
    ch = step(ch, lambda c: c.queue_bind("seed.q", "seed.headers", arguments={"x-match": "any", "k": "v"}))
    ch = step(ch, lambda c: c.exchange_bind("seed.headers", "seed.topic", routing_key="#"))
    ch = step(ch, lambda c: c.basic_qos(prefetch_count=5))
    ch = step(ch, lambda c: c.basic_publish("seed.topic", "a.b.c", b"hello", properties=props))
    ch = step(ch, lambda c: c.basic_publish("", "seed.q", bytes(range(256)) * 40,
                                            properties=pika.BasicProperties(delivery_mode=2)))
    ch = step(ch, lambda c: c.basic_publish("", "seed.q", b""))
    ch = step(ch, lambda c: c.basic_publish("seed.topic", "nowhere", b"unroutable", mandatory=True))
    ch = step(ch, lambda c: c.basic_get("seed.q", auto_ack=False))
    ch = step(ch, lambda c: c.basic_recover(requeue=True))
    got = []

    def consume(c):
        for method, _, _ in c.consume("seed.q", inactivity_timeout=0.5):
            if method is None:
                break
            got.append(method.delivery_tag)
            if len(got) == 1:
                c.basic_nack(method.delivery_tag, requeue=True)
            elif len(got) == 2:
                c.basic_reject(method.delivery_tag, requeue=False)
            else:
                c.basic_ack(method.delivery_tag)
            if len(got) >= 6:
                break
        c.cancel()

    ch = step(ch, consume)
    tx = conn.channel()
    tx = step(tx, lambda c: c.tx_select())
    tx = step(tx, lambda c: c.basic_publish("", "seed.q", b"in tx"))
    tx = step(tx, lambda c: c.tx_rollback())
    tx = step(tx, lambda c: c.tx_commit())
    ch = step(ch, lambda c: c.queue_declare("", exclusive=True))
    ch = step(ch, lambda c: c.queue_declare("seed.missing", passive=True))
    ch = step(ch, lambda c: c.queue_unbind("seed.q", "seed.topic", routing_key="a.*.#"))
    ch = step(ch, lambda c: c.exchange_unbind("seed.headers", "seed.topic", routing_key="#"))
    ch = step(ch, lambda c: c.queue_purge("seed.q"))
    ch = step(ch, lambda c: c.queue_delete("seed.q"))
    ch = step(ch, lambda c: c.exchange_delete("seed.topic"))
    ch = step(ch, lambda c: c.exchange_delete("seed.headers"))
    ch.close()
    conn.close()


def capture(coney):
    """Runs pika_session through the proxy against a fresh coney; returns [(c2s, s2c)]."""
    data_dir = tempfile.mkdtemp(prefix="coney-seeds.")
    broker = Coney(coney, data_dir, log_path=None, log_level="warn")
    try:
        broker.start(timeout=10)
        proxy = Proxy(broker.port)
        pika_session(proxy.port)
        time.sleep(0.3)
        proxy.listener.close()
        return [(bytes(a), bytes(b)) for a, b in proxy.captures if a]
    finally:
        if broker.alive():
            broker.stop()
        broker.close()
        shutil.rmtree(data_dir, ignore_errors=True)


class Corpus:
    def __init__(self, out):
        self.out = out
        self.count = {}

    def add(self, target, name, data):
        data = bytes(data)[:SEED_BYTES_MAX]
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"seed-{name}"), "wb") as f:
            f.write(data)
        self.count[target] = self.count.get(target, 0) + 1


def topic_programs(rng, n):
    """Byte programs for fuzz_targets/topic_trie.rs: op byte, word-count byte, word bytes."""
    out = []
    for _ in range(n):
        prog = bytearray()
        for _ in range(rng.randint(4, 40)):
            prog.append(rng.randrange(256) & ~3 | rng.choice([0, 0, 2, 3, 3]))
            words = rng.randint(0, 6)
            prog.append(words)
            prog.extend(rng.randrange(6) for _ in range(words))
        out.append(bytes(prog))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coney", default=os.path.join(ROOT, "target/release/coney"))
    ap.add_argument("--out", default=os.path.join(ROOT, "fuzz/corpus"))
    args = ap.parse_args()
    for target in ("frame", "method", "table", "properties", "topic_trie", "session"):
        d = os.path.join(args.out, target)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith("seed-"):
                    os.remove(os.path.join(d, f))
    corpus = Corpus(args.out)

    for (class_id, method_id), cls in sorted(
            ((divmod(k, 1 << 16)), c) for k, c in pika.spec.methods.items()):
        payload = pika.frame.Method(1, rich_method(cls)).marshal()[7:-1]
        corpus.add("method", f"pika-{cls.NAME.lower().replace('.', '-')}", payload)

    prop_sets = {
        "empty": pika.BasicProperties(),
        "persistent": pika.BasicProperties(delivery_mode=2),
        "all": pika.BasicProperties(
            content_type="application/json", content_encoding="gzip", headers=RICH_TABLE,
            delivery_mode=1, priority=9, correlation_id="c", reply_to="r", expiration="1000",
            message_id="m", timestamp=1, type="t", user_id="guest", app_id="a", cluster_id="k"),
    }
    for name, props in prop_sets.items():
        payload = pika.frame.Header(1, 1234, props).marshal()[7:-1]
        corpus.add("properties", f"pika-{name}", payload)
    corpus.add("table", "pika-rich", _table_bytes(RICH_TABLE))
    corpus.add("table", "pika-nested", _table_bytes({"a": RICH_TABLE["nested"], "l": [[[]], {}]}))
    corpus.add("table", "empty", b"")

    for i, (c2s, s2c) in enumerate(capture(args.coney)):
        assert c2s.startswith(PROTOCOL_HEADER), c2s[:8]
        for direction, stream in (("c2s", c2s[len(PROTOCOL_HEADER):]), ("s2c", s2c)):
            frames = split_frames(stream)
            raw = b"".join(frame(k, ch, p) for k, ch, p in frames)
            corpus.add("frame", f"capture{i}-{direction}-coney", bytes([FRAME_MAX_CONEY]) + raw[:4096])
            corpus.add("frame", f"capture{i}-{direction}-nolimit", bytes([FRAME_MAX_NONE]) + raw[-4096:])
            seen = set()
            for n, (kind, ch, payload) in enumerate(frames):
                key = (kind, payload[:4]) if kind == 1 else (kind, payload[12:])
                if key in seen:
                    continue
                seen.add(key)
                if kind == 1:
                    corpus.add("method", f"capture{i}-{direction}-{n:03}", payload)
                    for table in _tables_in(payload):
                        corpus.add("table", f"capture{i}-{direction}-{n:03}", table)
                elif kind == 2:
                    corpus.add("properties", f"capture{i}-{direction}-{n:03}", payload)
            if direction == "c2s":
                for name, program in session_programs(frames):
                    corpus.add("session", f"capture{i}-{name}", program)
    corpus.add("frame", "heartbeat", bytes([FRAME_MAX_CONEY, 8, 0, 0, 0, 0, 0, 0, 0xCE]))
    for n, prog in enumerate(topic_programs(random.Random(6), 24)):
        corpus.add("topic_trie", f"random-{n:02}", prog)
    total = sum(corpus.count.values())
    print(f"wrote {total} seeds: {corpus.count}")


# Step encoding of fuzz_targets/session.rs: op byte (bit 0 = connection, bits 1-3 = kind).
# Kind 0 takes a 16-bit length and that many raw bytes; kind 2 takes a frame type selector, a
# channel, a 16-bit length and the payload; kind 4 is a delivery/write pass; kind 7 a drop.
SESSION_FEED, SESSION_FRAME, SESSION_WRITE, SESSION_DROP = 0x00, 0x04, 0x08, 0x0e
FRAME_TYPE_SELECTOR = {1: 0, 2: 1, 3: 2, 8: 3}


def session_programs(frames):
    """Session-target programs replaying a captured client stream after the handshake."""
    raw, parsed = [], []
    opened = False
    for kind, ch, payload in frames:
        ids = struct.unpack(">HH", payload[:4]) if kind == 1 and len(payload) >= 4 else None
        if not opened:
            opened = ids == (10, 40)
            continue
        if ids == (20, 10) and ch in (1, 2):
            continue   # the target opens channels 1 and 2 itself
        raw.append(frame(kind, ch, payload))
        parsed.append((kind, ch, payload))

    def program(conn_of, group):
        out = bytearray()
        for n in range(0, len(raw), group):
            chunk = b"".join(raw[n:n + group])[:0xFFFF]
            out += bytes([SESSION_FEED | conn_of(n)]) + struct.pack(">H", len(chunk)) + chunk
            out.append(SESSION_WRITE)
        return bytes(out)

    def framed(conn_of, write_every):
        out = bytearray()
        for n, (kind, ch, payload) in enumerate(parsed):
            out += bytes([SESSION_FRAME | conn_of(n), FRAME_TYPE_SELECTOR[kind], ch])
            out += struct.pack(">H", len(payload[:0xFFFF])) + payload[:0xFFFF]
            if n % write_every == write_every - 1:
                out.append(SESSION_WRITE)
        return bytes(out)

    yield "framed-conn0", framed(lambda n: 0, 3)
    yield "framed-alternating", framed(lambda n: (n // 5) % 2, 2)
    yield "conn0-by3", program(lambda n: 0, 3)
    yield "alternating", program(lambda n: (n // 4) % 2, 4)
    dropped = bytearray(program(lambda n: 0, 3))
    cut = len(dropped) // 2
    yield "drop-mid", bytes(dropped[:cut]) + bytes([SESSION_DROP]) + bytes(dropped[cut:])


def _table_bytes(value):
    buf = []
    encode_table(buf, value)
    return b"".join(buf)[4:]


def _tables_in(payload):
    """The field tables of the methods that carry one (start, start-ok, declares, binds, consume)."""
    class_id, method_id = struct.unpack(">HH", payload[:4])
    body = payload[4:]
    try:
        if (class_id, method_id) == (10, 10):
            n = struct.unpack(">I", body[2:6])[0]
            return [body[6:6 + n]]
        if (class_id, method_id) == (10, 11):
            n = struct.unpack(">I", body[:4])[0]
            return [body[4:4 + n]]
    except struct.error:
        return []
    return []


if __name__ == "__main__":
    sys.exit(main())
