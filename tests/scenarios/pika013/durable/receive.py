# durable:消息不丟失 — 消費者 (pika 0.13.1: the tutorial's own API)
# WORK_SECONDS replaces the tutorial's time.sleep(5); bounded by STOP_AFTER
# messages and TIME_LIMIT seconds (exit status 3).
import os
import sys
import time

# pika 0.13.1 uses collections.Callable, which Python 3.10 removed:
import collections, collections.abc; collections.Callable = collections.abc.Callable  # noqa: E401,E702

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'hello')
WORK_SECONDS = float(os.environ.get('WORK_SECONDS', '5'))
STOP_AFTER = int(os.environ.get('STOP_AFTER', '0'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

# make message persistent
channel.queue_declare(queue=QUEUE, durable=True)

acked = []


def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)
    print(" [x] delivery_mode=%r" % properties.delivery_mode)
    time.sleep(WORK_SECONDS)
    print('ok')
    ch.basic_ack(delivery_tag=method.delivery_tag)
    acked.append(body)
    if STOP_AFTER and len(acked) >= STOP_AFTER:
        ch.stop_consuming()


channel.basic_consume(callback,
                      queue=QUEUE,
                      no_ack=False)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.add_timeout(TIME_LIMIT, time_limit)

print(' [*] Waiting for messages. To exit press CTRL+C')
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
