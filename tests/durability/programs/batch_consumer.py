"""Compaction-test consumer (pika 1.x): consumes QUEUE with manual acks (prefetch
PREFETCH), acking with multiple=True every BATCH messages; after each such ack it makes a
round trip on the same channel (a passive queue.declare), so every ack before it has been
processed and written by the broker when the answer arrives.

Output (stdout, unbuffered):
    READY
    R <n> <0|1>        received message n (redelivered flag)
    A <n> <n> ...      an ack covering these was handed to pika
    D <n> <n> ...      those acks are done: the broker answered a later round trip
    CLOSED <reason>
"""
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ['QUEUE']
PREFETCH = int(os.environ.get('PREFETCH', '400'))
BATCH = int(os.environ.get('BATCH', '200'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

try:
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT,
                                                             connection_attempts=1, socket_timeout=5))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=PREFETCH)
    pending = []
    print('READY')
    for method, props, body in ch.consume(QUEUE, auto_ack=False, inactivity_timeout=TIME_LIMIT):
        if method is None:
            break
        n = int(body.split(b'|', 1)[0])
        print('R %d %d' % (n, 1 if method.redelivered else 0))
        pending.append(n)
        if len(pending) >= BATCH:
            ch.basic_ack(method.delivery_tag, multiple=True)
            print('A %s' % ' '.join(map(str, pending)))
            ch.queue_declare(QUEUE, passive=True)
            print('D %s' % ' '.join(map(str, pending)))
            pending = []
    print('CLOSED time limit')
except Exception as e:  # noqa: BLE001  (the broker was killed)
    print('CLOSED %r' % (e,))
sys.exit(0)
