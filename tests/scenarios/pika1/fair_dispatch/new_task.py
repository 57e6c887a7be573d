# 消息獲取順序 — 生產者 (pika 1.x API): COUNT tasks, "task 0" .. "task COUNT-1".
import os

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'hello')
COUNT = int(os.environ.get('COUNT', '10'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue=QUEUE)

for i in range(COUNT):
    message = 'task %d' % i
    channel.basic_publish(exchange='',
                          routing_key=QUEUE,
                          body=message)
    print(" [x] Sent %r" % message)
connection.close()
