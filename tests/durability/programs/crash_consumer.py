"""Crash-test consumer (pika 1.x): consumes QUEUE with manual acks and
prefetch PREFETCH, acking each message right after it arrives.

Output (stdout, unbuffered):
    READY                  consuming
    R <n> <0|1>            received message n (redelivered flag)
    A <n>                  basic.ack for n is being handed to pika (it may or may
                           not reach the broker before a crash or a stop). Printed
                           before the call: pika writes the ack and then reads, so a
                           320 arriving in that read raises out of basic_ack after
                           the ack went out, and a line printed after it would be
                           missing for an ack the broker did act on
    CLOSED <reason>        the connection is gone; exit 0
"""
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ['QUEUE']
PREFETCH = int(os.environ.get('PREFETCH', '50'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

conn = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT,
                                                         connection_attempts=1, socket_timeout=5))
ch = conn.channel()
ch.basic_qos(prefetch_count=PREFETCH)


def on_message(c, method, props, body):
    n = int(body.split(b'|', 1)[0])
    print('R %d %d' % (n, 1 if method.redelivered else 0))
    print('A %d' % n)
    c.basic_ack(method.delivery_tag)


ch.basic_consume(QUEUE, on_message, auto_ack=False)
conn.call_later(TIME_LIMIT, ch.stop_consuming)
print('READY')
try:
    ch.start_consuming()
    print('CLOSED time limit')
    conn.close()
except Exception as e:  # noqa: BLE001  (the broker was killed)
    print('CLOSED %r' % (e,))
sys.exit(0)
