#!/usr/bin/env python3
"""Soak and chaos driver for a running coney (started by scripts/soak.sh), loopback only.

Roles (each a separate process, so consumers can be SIGKILLed):
  orchestrator  (default) sets up queues, runs everything below for --seconds, drains the
                queues, checks the invariants and prints the summary. Exit 1 on a violation.
  publisher     publishes numbered persistent messages with publisher confirms (up to
                CONFIRM_WINDOW in flight), now and then draining the window, closing its
                channel and opening a new one; writes what was confirmed to a file.
  consumer      consumes every queue with manual acks and a prefetch, randomly closing and
                reopening its channel, nacking or rejecting a few; records each delivery
                (before acking) to its own file. `--slow` sleeps per message.
The orchestrator also SIGKILLs random consumers (and starts replacements), floods the broker
with idle connections that do the AMQP handshake by hand, and samples the broker's RSS and
open file descriptors from /proc/PID.

Invariants checked at the end:
  lost = 0              every confirmed message was delivered at least once;
  dup_fresh = 0         no message was delivered twice with redelivered=False;
  corrupt = 0           every delivered body is the one published under its id;
  unknown = 0           nothing was delivered that no publisher sent;
  RSS after <= before + --rss-slack-mb (on a violation, gdb tells a leak from retention);
  fds other than message store segments back to their starting count (within --settle-secs),
  and store fds at most one per segment file on disk plus the writer, none on a deleted file.
"""
import argparse
import faulthandler
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pika
import pika.exceptions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
from brokerlib import pika_params, proc_fd_count, proc_fd_targets, proc_rss_kb  # noqa: E402
from rawamqp import CLOSE, PROTOCOL_HEADER, handshake, read_method  # noqa: E402

QUEUES = ["soak.q0", "soak.q1", "soak.q2"]
TOPIC = "soak.topic"
BIG_BODY_BYTES = (64 * 1024, 300 * 1024)  # above frame_max (128 KiB) too, so bodies span frames
BIG_BODY_PERCENT = 2
CONSUMER_PREFETCH = 50
SLOW_PREFETCH = 5
SLOW_SLEEP_SECS = 0.05
CONFIRM_WINDOW = 200
# A publisher still waiting for confirms this long after its deadline reports them missing.
CONFIRM_GRACE_SECS = 30

# --------------------------------------------------------------------------- message format


def body_for(msg_id, seq):
    """A body that names its id and has a size and filler derived from it, so any corruption
    or mix-up between messages is detectable by the consumer."""
    rng = random.Random(msg_id)
    if rng.randrange(100) < BIG_BODY_PERCENT:
        size = rng.randint(*BIG_BODY_BYTES)
    else:
        size = rng.randint(0, 512)
    head = f"{msg_id}|{size}|".encode()
    return head + bytes([seq % 251]) * size


def body_ok(body):
    try:
        msg_id, size, rest = body.split(b"|", 2)
        seq = int(msg_id.rsplit(b"-", 1)[1])
        return msg_id.decode(), len(rest) == int(size) and rest == bytes([seq % 251]) * int(size)
    except (ValueError, IndexError):
        return None, False


def params(port, name):
    """The soak's clients retry a refused connection: consumers restart while the broker is busy."""
    return pika_params(port, name=name, connection_attempts=3, retry_delay=0.5, socket_timeout=10)


# --------------------------------------------------------------------------- publisher

class Stop:
    """Set by SIGTERM: roles finish their current step and exit cleanly."""
    flag = False

    @classmethod
    def install(cls):
        signal.signal(signal.SIGTERM, lambda *_: setattr(cls, "flag", True))


class Publisher:
    """Asynchronous publisher (pika SelectConnection) keeping up to CONFIRM_WINDOW messages
    awaiting their confirm, so the broker sees pipelined publishes, not one per round trip.
    Every so often it lets the window drain, closes its channel and opens a new one."""

    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed * 1000 + a.id)
        self.deadline = time.monotonic() + a.seconds
        self.seq = 0
        self.confirmed, self.unconfirmed, self.channel_cycles = [], 0, 0
        self.pending = {}   # delivery tag -> message id, for the current channel
        self.ch, self.next_tag, self.closing = None, 1, False
        self.cycle_at = self.rng.randint(500, 5000)
        self.conn = None

    def run(self):
        self.conn = pika.SelectConnection(
            params(self.a.port, f"soak-publisher-{self.a.id}"),
            on_open_callback=lambda c: self.open_channel(),
            on_open_error_callback=lambda c, e: self.fail(f"connect: {e!r}"),
            on_close_callback=lambda c, e: c.ioloop.stop())
        self.conn.ioloop.call_later(0.5, self.tick)
        self.conn.ioloop.start()

    def fail(self, why):
        print(f"publisher {self.a.id}: {why}", file=sys.stderr)
        self.conn.ioloop.stop()

    def open_channel(self):
        self.conn.channel(on_open_callback=self.on_channel)

    def on_channel(self, ch):
        self.ch, self.next_tag, self.pending = ch, 1, {}
        ch.add_on_close_callback(self.on_channel_closed)
        ch.add_on_return_callback(self.on_return)
        ch.confirm_delivery(self.on_confirm, callback=lambda _: self.pump())

    def on_channel_closed(self, ch, reason):
        # Whatever was still unconfirmed may or may not have been routed: not counted as lost.
        self.unconfirmed += len(self.pending)
        self.pending = {}
        self.ch = None
        if self.closing:
            if self.conn.is_open:
                self.conn.close()
        else:
            if not isinstance(reason, pika.exceptions.ChannelClosedByClient):
                print(f"publisher {self.a.id}: channel closed: {reason!r}", file=sys.stderr)
            self.open_channel()

    def on_return(self, ch, method, props, body):
        print(f"publisher {self.a.id}: returned {props.message_id}: {method.reply_text}", file=sys.stderr)

    def on_confirm(self, frame):
        m = frame.method
        acked = isinstance(m, pika.spec.Basic.Ack)
        tags = [t for t in self.pending if t <= m.delivery_tag] if m.multiple else [m.delivery_tag]
        for t in tags:
            msg_id = self.pending.pop(t, None)
            if msg_id is None:
                continue
            if acked:
                self.confirmed.append(msg_id)
            else:
                self.unconfirmed += 1
        self.pump()

    def done(self):
        return time.monotonic() >= self.deadline or Stop.flag

    def pump(self):
        if self.ch is None or not self.ch.is_open:
            return
        if self.done() or self.seq >= self.cycle_at:
            if not self.pending:
                self.closing = self.done()
                if not self.closing:
                    self.channel_cycles += 1
                    self.cycle_at = self.seq + self.rng.randint(500, 5000)
                self.ch.close()
            return
        while len(self.pending) < CONFIRM_WINDOW and self.seq < self.cycle_at:
            msg_id = f"p{self.a.id}-{self.seq}"
            body = body_for(msg_id, self.seq)
            props = pika.BasicProperties(delivery_mode=2, message_id=msg_id)
            q = QUEUES[self.seq % len(QUEUES)]
            if self.seq % 2:
                self.ch.basic_publish(TOPIC, f"{q}.{self.seq % 7}", body, properties=props, mandatory=True)
            else:
                self.ch.basic_publish("", q, body, properties=props, mandatory=True)
            self.pending[self.next_tag] = msg_id
            self.next_tag += 1
            self.seq += 1

    def tick(self):
        if time.monotonic() > self.deadline + CONFIRM_GRACE_SECS:
            self.fail(f"{len(self.pending)} confirms still missing {CONFIRM_GRACE_SECS} s after the end")
            self.unconfirmed += len(self.pending)
            self.pending = {}
            return
        self.pump()
        self.conn.ioloop.call_later(0.5, self.tick)


def run_publisher(a):
    Stop.install()
    p = Publisher(a)
    p.run()
    with open(a.out, "w") as f:
        json.dump({"published": p.seq, "confirmed": p.confirmed, "unconfirmed": p.unconfirmed,
                   "channel_cycles": p.channel_cycles}, f)


# --------------------------------------------------------------------------- consumer

def run_consumer(a):
    Stop.install()
    faulthandler.register(signal.SIGUSR1)
    rng = random.Random(a.seed * 1000 + a.id)
    fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    conn = pika.BlockingConnection(params(a.port, f"soak-consumer-{a.id}"))
    prefetch = SLOW_PREFETCH if a.slow else CONSUMER_PREFETCH
    state = {"ch": None, "delivered": 0}

    def on_message(ch, method, props, body):
        if Stop.flag:
            # Leave it unacked: closing the channel requeues it. Not acking also stops new
            # deliveries, which would otherwise keep pika dispatching and never return.
            return
        msg_id, ok = body_ok(body)
        # Recorded before the ack, so a SIGKILL can lose an ack but never a record of delivery.
        os.write(fd, f"{msg_id or '?'}\t{int(method.redelivered)}\t{int(ok)}\n".encode())
        state["delivered"] += 1
        if a.slow:
            time.sleep(SLOW_SLEEP_SECS)
        roll = rng.randrange(1000)
        if roll < 5:
            ch.basic_nack(method.delivery_tag, requeue=True)
        elif roll < 8:
            ch.basic_reject(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    def open_channel():
        ch = conn.channel()
        ch.basic_qos(prefetch_count=prefetch)
        for q in QUEUES:
            ch.basic_consume(q, on_message, auto_ack=False)
        state["ch"] = ch

    open_channel()
    cycle_at = time.monotonic() + rng.uniform(2, 10)
    while not Stop.flag:
        conn.process_data_events(time_limit=0.2)
        if time.monotonic() >= cycle_at:
            # Closing a channel with unacked deliveries requeues them (redelivered=True).
            state["ch"].close()
            open_channel()
            cycle_at = time.monotonic() + rng.uniform(2, 10)
    state["ch"].close()
    conn.close()
    os.close(fd)


# --------------------------------------------------------------------------- idle flood

FLOOD_THREADS = 4
FLOOD_WAVES_PER_THREAD = 5
# After the chaos phase ends, the flood may take this long to finish its quota without holds.
FLOOD_OVERTIME_SECS = 60


def idle_flood(port, total, seconds, stats, stop):
    """Opens `total` idle connections from FLOOD_THREADS threads, in waves spread over
    `seconds`, and closes each wave in one of three ways: the connection.close handshake, an
    abrupt close, or a socket that only ever sent the protocol header."""
    lock = threading.Lock()
    t_end = time.monotonic() + seconds

    def worker(n, quota):
        rng = random.Random(7 + n)
        for w in range(FLOOD_WAVES_PER_THREAD):
            if time.monotonic() > t_end + FLOOD_OVERTIME_SECS:
                return
            wave_started = time.monotonic()
            budget = max(0.0, (t_end - wave_started) / (FLOOD_WAVES_PER_THREAD - w))
            held = []
            for _ in range(quota // FLOOD_WAVES_PER_THREAD):
                kind = rng.choice(["graceful", "abrupt", "abrupt", "header-only"])
                try:
                    if kind == "header-only":
                        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                        sock.sendall(PROTOCOL_HEADER)
                    else:
                        sock = handshake(port)
                    held.append((kind, sock))
                except (OSError, AssertionError, ConnectionError) as e:
                    with lock:
                        stats["failed"] += 1
                        stats.setdefault("errors", []).append(repr(e))
            with lock:
                stats["opened"] += len(held)
                stats["held_now"] += len(held)
                stats["peak_held"] = max(stats["peak_held"], stats["held_now"])
            # Hold the wave for what is left of its share of the run (none once it is over).
            stop.wait(max(0.0, budget - (time.monotonic() - wave_started)) / 2)
            failed = 0
            for kind, sock in held:
                try:
                    if kind == "graceful":
                        sock.sendall(CLOSE)
                        ids, _, _ = read_method(sock, b"")
                        failed += ids != (10, 51)
                except (OSError, ConnectionError):
                    failed += 1
                sock.close()
            with lock:
                stats["closed"] += len(held)
                stats["held_now"] -= len(held)
                stats["failed"] += failed
            stop.wait(max(0.0, budget - (time.monotonic() - wave_started)))

    threads = [threading.Thread(target=worker, args=(n, total // FLOOD_THREADS), daemon=True)
               for n in range(FLOOD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# --------------------------------------------------------------------------- broker metrics

def fd_census(pid, data_dir):
    """(other fds, store fds, store fds on deleted files). Store fds are the message store's
    segment files: the writer plus read handles it keeps per live segment, a bounded cache
    that a run may leave larger than it found it. Everything else (sockets, the poller, the
    signal pipe, logs) must come back to its starting count."""
    store_dir = os.path.join(os.path.realpath(data_dir), "msgs") + os.sep if data_dir else None
    other, store, deleted = 0, 0, 0
    for target in proc_fd_targets(pid).values():
        if store_dir and target.startswith(store_dir):
            store += 1
            deleted += target.endswith(" (deleted)")
        else:
            other += 1
    return other, store, deleted


def segment_files(data_dir):
    try:
        return sum(1 for f in os.listdir(os.path.join(data_dir, "msgs")) if f.endswith(".seg"))
    except OSError:
        return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_rss_kb, self.peak_fds = pid, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.25):
            try:
                self.peak_rss_kb = max(self.peak_rss_kb, proc_rss_kb(self.pid))
                self.peak_fds = max(self.peak_fds, proc_fd_count(self.pid))
            except OSError:
                return


# --------------------------------------------------------------------------- orchestrator

def spawn(a, role, n, out, extra=()):
    cmd = [sys.executable, os.path.abspath(__file__), "--role", role, "--port", str(a.port),
           "--id", str(n), "--seconds", str(a.seconds), "--seed", str(a.seed), "--out", out, *extra]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def setup(port):
    conn = pika.BlockingConnection(params(port, "soak-setup"))
    ch = conn.channel()
    ch.exchange_declare(TOPIC, "topic", durable=True)
    for q in QUEUES:
        ch.queue_declare(q, durable=True)
        ch.queue_purge(q)
        ch.queue_bind(q, TOPIC, routing_key=f"{q}.#")
    conn.close()


def drain(port, out_path, max_secs):
    """Consumes every queue until all are empty and quiet; returns message counts left."""
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    conn = pika.BlockingConnection(params(port, "soak-drain"))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=500)

    def on_message(c, method, props, body):
        msg_id, ok = body_ok(body)
        os.write(fd, f"{msg_id or '?'}\t{int(method.redelivered)}\t{int(ok)}\n".encode())
        c.basic_ack(method.delivery_tag)

    for q in QUEUES:
        ch.basic_consume(q, on_message, auto_ack=False)
    deadline = time.monotonic() + max_secs
    quiet_since = time.monotonic()
    last = os.fstat(fd).st_size
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.5)
        size = os.fstat(fd).st_size
        if size != last:
            last, quiet_since = size, time.monotonic()
        elif time.monotonic() - quiet_since > 3:
            break
    ch.close()
    ch = conn.channel()
    left = {q: ch.queue_declare(q, passive=True).method.message_count for q in QUEUES}
    conn.close()
    os.close(fd)
    return left


def malloc_diagnosis(pid, broker_log):
    """Tells a leak from allocator retention: glibc's malloc_stats (live bytes vs bytes held
    from the system), then malloc_trim(0) and the RSS after it, through gdb if it is there.
    Runs only after a violation, at the very end: it stops the broker for a moment."""
    if not shutil.which("gdb") or not broker_log:
        return " (install gdb for a leak-or-retention diagnosis)"
    before = proc_rss_kb(pid)
    try:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void) malloc_stats()",
                        "-ex", "call (int) malloc_trim(0)"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f" (gdb failed: {e!r})"
    time.sleep(0.5)
    after = proc_rss_kb(pid)
    try:
        with open(broker_log, errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    totals = text.split("Total (incl. mmap):")
    stats = totals[-1] if len(totals) > 1 else ""
    in_use = [l.split("=")[1].strip() for l in stats.splitlines() if l.startswith("in use bytes")]
    system = [l.split("=")[1].strip() for l in stats.splitlines() if l.startswith("system bytes")]
    live_mib = int(in_use[0]) / 2**20 if in_use else float("nan")
    held_mib = int(system[0]) / 2**20 if system else float("nan")
    verdict = ("allocator retention, not a leak" if after <= proc_baseline_guess(before, live_mib)
               else "live memory: a leak or a cache that does not shrink")
    return (f"; glibc: {live_mib:.1f} MiB in use of {held_mib:.1f} MiB held; after malloc_trim(0) "
            f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB: {verdict}")


def proc_baseline_guess(rss_before_trim_kb, live_mib):
    """RSS a trimmed heap should come down to: the live bytes plus 16 MiB for code and stacks."""
    return min(rss_before_trim_kb, (live_mib + 16) * 1024)


def wait_for(pred, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.25)
    return pred()


def orchestrate(a):
    rng = random.Random(a.seed)
    work = a.work_dir
    os.makedirs(work, exist_ok=True)
    # The broker has only its listener, poller, signal pipe and store files open now.
    time.sleep(0.5)
    fds_before, rss_before = proc_fd_count(a.pid), proc_rss_kb(a.pid)
    targets_before = proc_fd_targets(a.pid)
    other_before, store_before, _ = fd_census(a.pid, a.data_dir)
    sampler = Sampler(a.pid)
    sampler.start()
    setup(a.port)
    t0 = time.monotonic()

    publishers = [spawn(a, "publisher", i, f"{work}/publisher-{i}.json") for i in range(a.publishers)]
    consumers, generation, kills = {}, 0, 0

    def start_consumer(slot, slow=False):
        nonlocal generation
        generation += 1
        extra = ["--slow"] if slow else []
        consumers[slot] = spawn(a, "consumer", generation, f"{work}/consumer-{generation}.tsv", extra)

    for slot in range(a.consumers):
        start_consumer(slot, slow=(slot == 0))
    flood_stats = {"opened": 0, "closed": 0, "failed": 0, "peak_held": 0, "held_now": 0}
    flood_stop = threading.Event()
    flood = threading.Thread(target=idle_flood,
                             args=(a.port, a.idle_connections, a.seconds, flood_stats, flood_stop),
                             daemon=True)
    flood.start()

    deadline = t0 + a.seconds
    next_kill = time.monotonic() + rng.uniform(1, a.kill_every_max)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if a.pid and not os.path.exists(f"/proc/{a.pid}"):
            print("soak: the broker died during the run", file=sys.stderr)
            break
        if time.monotonic() >= next_kill:
            slot = rng.randrange(a.consumers)
            victim = consumers[slot]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            start_consumer(slot, slow=(slot == 0))
            next_kill = time.monotonic() + rng.uniform(1, a.kill_every_max)
        for slot, p in consumers.items():
            if p.poll() is not None:
                print(f"soak: consumer in slot {slot} exited with {p.returncode}; restarting", file=sys.stderr)
                start_consumer(slot, slow=(slot == 0))

    phases = {"chaos": time.monotonic() - t0}
    for p in publishers:
        if p.wait(timeout=60) != 0:
            print(f"soak: a publisher exited with {p.returncode}", file=sys.stderr)
    phases["publishers done"] = time.monotonic() - t0
    for p in consumers.values():
        p.send_signal(signal.SIGTERM)
    for p in consumers.values():
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            print(f"soak: consumer pid {p.pid} ignored SIGTERM for 15 s; its stack:", file=sys.stderr)
            p.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            p.kill()
            p.wait()
    phases["consumers stopped"] = time.monotonic() - t0
    flood_stop.set()
    flood.join(timeout=FLOOD_OVERTIME_SECS + 30)
    run_secs = time.monotonic() - t0
    phases["flood done"] = run_secs

    broker_alive = os.path.exists(f"/proc/{a.pid}")
    left = drain(a.port, f"{work}/drain.tsv", a.drain_secs) if broker_alive else {}
    phases["drained"] = time.monotonic() - t0

    # Let the broker notice closed sockets and reap handshake timeouts before measuring.
    fds_settled = broker_alive and wait_for(
        lambda: fd_census(a.pid, a.data_dir)[0] <= other_before, a.settle_secs)
    other_after, store_after, store_deleted = fd_census(a.pid, a.data_dir) if broker_alive else (-1, -1, -1)
    segments_after = segment_files(a.data_dir) if a.data_dir else 0
    sampler.stop.set()
    sampler.join()
    fds_after = proc_fd_count(a.pid) if broker_alive else -1
    rss_after = proc_rss_kb(a.pid) if broker_alive else -1
    extra_fds = {fd: t for fd, t in proc_fd_targets(a.pid).items() if targets_before.get(fd) != t} if broker_alive else {}

    # ---- account
    published = confirmed_n = unconfirmed = pub_cycles = 0
    confirmed, published_by = set(), {}
    for i in range(a.publishers):
        try:
            with open(f"{work}/publisher-{i}.json") as f:
                r = json.load(f)
        except (OSError, ValueError):
            print(f"soak: publisher {i} left no report", file=sys.stderr)
            continue
        published += r["published"]
        published_by[i] = r["published"]
        unconfirmed += r["unconfirmed"]
        pub_cycles += r["channel_cycles"]
        confirmed.update(r["confirmed"])
    confirmed_n = len(confirmed)
    deliveries = fresh = redelivered = corrupt = 0
    fresh_count, seen = {}, set()
    for name in sorted(os.listdir(work)):
        if not name.endswith(".tsv"):
            continue
        with open(os.path.join(work, name)) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3:
                    continue   # a line cut by SIGKILL mid-write cannot happen with O_APPEND writes
                msg_id, redel, ok = parts
                deliveries += 1
                if ok != "1":
                    corrupt += 1
                if redel == "1":
                    redelivered += 1
                else:
                    fresh += 1
                    fresh_count[msg_id] = fresh_count.get(msg_id, 0) + 1
                seen.add(msg_id)
    all_published_ids = {f"p{i}-{s}" for i, n in published_by.items() for s in range(n)}
    unknown = {m for m in seen if m not in all_published_ids}
    lost = sorted(confirmed - seen)
    dup_fresh = sorted(m for m, n in fresh_count.items() if n > 1)
    rss_slack_kb = a.rss_slack_mb * 1024

    violations = []
    if not broker_alive:
        violations.append("broker died")
    if lost:
        violations.append(f"{len(lost)} confirmed messages lost, e.g. {lost[:5]}")
    if dup_fresh:
        violations.append(f"{len(dup_fresh)} messages delivered twice without redelivered, e.g. {dup_fresh[:5]}")
    if corrupt:
        violations.append(f"{corrupt} deliveries with a corrupt body")
    if unknown:
        violations.append(f"{len(unknown)} unknown message ids delivered, e.g. {sorted(unknown)[:5]}")
    if any(left.values()):
        violations.append(f"queues not empty after drain: {left}")
    if broker_alive and rss_after > rss_before + rss_slack_kb:
        violations.append(f"RSS after {rss_after} kB > before {rss_before} kB + {a.rss_slack_mb} MiB"
                          + malloc_diagnosis(a.pid, a.broker_log))
    if broker_alive and not fds_settled:
        violations.append(f"fd leak: {other_after} non-store fds open after vs {other_before} before: {extra_fds}")
    if broker_alive and a.data_dir and (store_deleted or store_after > segments_after + 1):
        violations.append(f"store fd leak: {store_after} segment fds ({store_deleted} on deleted files) "
                          f"for {segments_after} segment files: {extra_fds}")
    if flood_stats["failed"]:
        violations.append(f"{flood_stats['failed']} idle-flood connections failed: {flood_stats.get('errors', [])[:3]}")

    print("==== soak summary")
    rows = [
        ("run seconds", f"{run_secs:.1f}"),
        ("phases (s since start)", ", ".join(f"{k} {v:.1f}" for k, v in phases.items())),
        ("publishers / consumers", f"{a.publishers} / {a.consumers} (1 slow)"),
        ("messages published", published),
        ("messages confirmed", confirmed_n),
        ("messages not confirmed", unconfirmed),
        ("deliveries (incl. drain)", deliveries),
        ("distinct messages consumed", len(seen)),
        ("deliveries redelivered=True", redelivered),
        ("consumer kills (SIGKILL)", kills),
        ("consumer processes started", generation),
        ("publisher channel cycles", pub_cycles),
        ("idle connections opened/closed", f"{flood_stats['opened']}/{flood_stats['closed']} (peak {flood_stats['peak_held']} held)"),
        ("left in queues after drain", sum(left.values()) if left else "n/a"),
        ("lost (confirmed, never consumed)", len(lost)),
        ("duplicates without redelivered", len(dup_fresh)),
        ("corrupt bodies", corrupt),
        ("RSS before/peak/after (MiB)", f"{rss_before / 1024:.1f} / {sampler.peak_rss_kb / 1024:.1f} / {rss_after / 1024:.1f}"),
        ("fds before/peak/after", f"{fds_before} / {sampler.peak_fds} / {fds_after}"),
        ("  of which message store", f"{store_before} before, {store_after} after "
                                     f"({segments_after} segment files on disk)"),
    ]
    for k, v in rows:
        print(f"{k:<34} {v}")
    if violations:
        print("==== VIOLATIONS")
        for v in violations:
            print(f"  - {v}")
        return 1
    print("soak: OK, no violations")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", default="orchestrator", choices=["orchestrator", "publisher", "consumer"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, default=0, help="broker pid, for /proc metrics")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--id", type=int, default=0)
    ap.add_argument("--out", default="")
    ap.add_argument("--slow", action="store_true")
    ap.add_argument("--work-dir", default="soak-work")
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--consumers", type=int, default=6)
    ap.add_argument("--idle-connections", type=int, default=2000)
    ap.add_argument("--kill-every-max", type=float, default=5.0, help="max seconds between consumer kills")
    ap.add_argument("--drain-secs", type=float, default=180)
    ap.add_argument("--settle-secs", type=float, default=20)
    ap.add_argument("--rss-slack-mb", type=float, default=16,
                    help="how far above its starting RSS the broker may stay after the drain")
    ap.add_argument("--broker-log", default="", help="the broker's stderr, for malloc_stats output")
    ap.add_argument("--data-dir", default="", help="the broker's data dir, to tell store fds from others")
    a = ap.parse_args()
    if a.role == "publisher":
        return run_publisher(a)
    if a.role == "consumer":
        return run_consumer(a)
    if not a.pid:
        ap.error("--pid is required for the orchestrator")
    return orchestrate(a)


if __name__ == "__main__":
    sys.exit(main())
