# A priority work queue (pika 1.x API): the worker.
# One task at a time (prefetch_count=1, manual acks), so the broker picks the next task
# each time: the highest priority waiting. Bounded by STOP_AFTER tasks and TIME_LIMIT
# seconds (exit status 3).
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'priority_tasks')
STOP_AFTER = int(os.environ.get('STOP_AFTER', '0'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue=QUEUE, durable=True, arguments={'x-max-priority': 9})
channel.basic_qos(prefetch_count=1)

handled = []


def callback(ch, method, properties, body):
    print(" [x] Received %s (priority property %s)" % (body.decode(), properties.priority))
    ch.basic_ack(delivery_tag=method.delivery_tag)
    handled.append(body)
    if STOP_AFTER and len(handled) >= STOP_AFTER:
        ch.stop_consuming()


channel.basic_consume(queue=QUEUE, on_message_callback=callback, auto_ack=False)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.call_later(TIME_LIMIT, time_limit)
print(' [*] Waiting for tasks. To exit press CTRL+C')
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
