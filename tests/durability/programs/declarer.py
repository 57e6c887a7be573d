"""Declares durable definitions as fast as the broker confirms them (pika 1.x),
for the crash test of the definitions file.

Loop i = 1, 2, ...: declare durable queue PREFIX.q<i>, bind it to the durable
topic exchange PREFIX.x with key k<i>; every third i also delete queue
PREFIX.q<i-1>. Output (stdout, unbuffered), each line after the broker's -ok:
    READY
    D <i>      queue i declared and bound (queue.bind-ok received)
    X <i>      queue i deleted (queue.delete-ok received)
    CLOSED <reason>
"""
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
PREFIX = os.environ['PREFIX']
LIMIT = int(os.environ.get('LIMIT', '100000'))

try:
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT,
                                                             connection_attempts=1, socket_timeout=5))
    ch = conn.channel()
    ch.exchange_declare(PREFIX + '.x', 'topic', durable=True)
    print('READY')
    for i in range(1, LIMIT + 1):
        q = '%s.q%d' % (PREFIX, i)
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, PREFIX + '.x', 'k%d' % i)
        print('D %d' % i)
        if i % 3 == 0:
            ch.queue_delete('%s.q%d' % (PREFIX, i - 1))
            print('X %d' % (i - 1))
    print('CLOSED limit')
except Exception as e:  # noqa: BLE001  (the broker was killed)
    print('CLOSED %r' % (e,))
sys.exit(0)
