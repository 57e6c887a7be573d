# A priority work queue (pika 1.x API): the producer.
# Declares the durable queue with x-max-priority 9 and publishes COUNT persistent tasks
# with priorities cycling 0..9 (publisher confirms), before any worker runs.
import os

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'priority_tasks')
COUNT = int(os.environ.get('COUNT', '20'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue=QUEUE, durable=True, arguments={'x-max-priority': 9})
channel.confirm_delivery()
for i in range(COUNT):
    priority = i % 10
    body = 'task-%02d p=%d' % (i, priority)
    channel.basic_publish(exchange='', routing_key=QUEUE, body=body,
                          properties=pika.BasicProperties(delivery_mode=2, priority=priority))
    print(" [x] Sent %r" % body)
connection.close()
