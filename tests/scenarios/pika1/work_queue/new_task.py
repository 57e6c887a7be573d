# 應答參數 no_ack — 生產者 (pika 1.x API): puts one task into the queue.
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'hello')

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue=QUEUE)

message = ' '.join(sys.argv[1:]) or 'Hello World!'
channel.basic_publish(exchange='',
                      routing_key=QUEUE,
                      body=message)
print(" [x] Sent %r" % message)
connection.close()
