# Delayed retry with TTL + dead-letter exchange (pika 1.x API): the producer.
# Publishes each job named on the command line, persistent, with publisher confirms.
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
WORK_QUEUE = os.environ.get('WORK_QUEUE', 'work')

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.confirm_delivery()
for job in sys.argv[1:] or ['job-1']:
    channel.basic_publish(exchange='', routing_key=WORK_QUEUE, body=job,
                          properties=pika.BasicProperties(delivery_mode=2))
    print(" [x] Sent %r" % job)
connection.close()
