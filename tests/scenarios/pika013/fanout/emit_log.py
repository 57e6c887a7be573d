# 發布訂閱 fanout — 生產者 (pika 0.13.1: the tutorial's own API)
# Each command-line argument is published as one message
# (default: the tutorial's single "info: Hello World!").
import os
import sys

# pika 0.13.1 uses collections.Callable, which Python 3.10 removed:
import collections, collections.abc; collections.Callable = collections.abc.Callable  # noqa: E401,E702

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
EXCHANGE = os.environ.get('EXCHANGE', 'logs')

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

channel.exchange_declare(exchange=EXCHANGE, exchange_type='fanout')

for message in sys.argv[1:] or ["info: Hello World!"]:
    channel.basic_publish(exchange=EXCHANGE,
                          routing_key='',
                          body=message)
    print(" [x] Sent %r" % message)
connection.close()
