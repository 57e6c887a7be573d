# 消息獲取順序 — 生產者 (pika 0.13.1: the tutorial's own API): COUNT tasks, "task 0" .. "task COUNT-1".
import os

# pika 0.13.1 uses collections.Callable, which Python 3.10 removed:
import collections, collections.abc; collections.Callable = collections.abc.Callable  # noqa: E401,E702

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
