"""Declares N durable queues, each bound to amq.direct with its name as key, with pika on one
channel (each call waits for its -ok, as applications do), and prints the rate of
declare+bind pairs over the windows 1..1,000, 1,001..10,000 and 10,001..N (and per 10,000).

    .venv/pika1/bin/python scripts/declare_rate.py PORT N [PREFIX]

Used by scripts/store-probe.sh declare; bounded by N and a 1-hour time limit.
"""
import sys
import time

import pika

port, total = int(sys.argv[1]), int(sys.argv[2])
prefix = sys.argv[3] if len(sys.argv) > 3 else 'device'
conn = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', port, socket_timeout=30,
                                                         blocked_connection_timeout=60))
ch = conn.channel()
marks = sorted({1000, 10000, total} | set(range(10000, total + 1, 10000)))
t0 = last_t = time.monotonic()
last_n = 0
deadline = t0 + 3600
for i in range(1, total + 1):
    name = '%s.%07d' % (prefix, i)
    ch.queue_declare(name, durable=True)
    ch.queue_bind(name, 'amq.direct', routing_key=name)
    if i in marks:
        now = time.monotonic()
        print('pairs %7d: %6.0f pairs/s over %d..%d, %6.0f pairs/s since the start'
              % (i, (i - last_n) / (now - last_t), last_n + 1, i, i / (now - t0)), flush=True)
        last_t, last_n = now, i
    if time.monotonic() > deadline:
        print('time limit reached at %d pairs' % i, flush=True)
        break
conn.close()
