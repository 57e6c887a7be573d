# 簡單示例 — 消費者 (the founding tutorial's consumer, pika 1.x API)
# Like the tutorial it consumes with manual acks (auto_ack=False) but never
# acks, so every message goes back to the queue when it exits.
# Bounded for the test harness: stops after STOP_AFTER messages (if set) or
# after TIME_LIMIT seconds (exit status 3).
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'hello')
STOP_AFTER = int(os.environ.get('STOP_AFTER', '0'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

channel.queue_declare(queue=QUEUE)

received = []


def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)
    received.append(body)
    if STOP_AFTER and len(received) >= STOP_AFTER:
        ch.stop_consuming()


channel.basic_consume(queue=QUEUE,
                      on_message_callback=callback,
                      auto_ack=False)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.call_later(TIME_LIMIT, time_limit)

print(' [*] Waiting for messages. To exit press CTRL+C')
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
