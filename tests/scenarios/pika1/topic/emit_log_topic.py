# 模糊匹配 topic — 生產者 (pika 1.x API)
# Each command-line argument is ROUTING_KEY or ROUTING_KEY=MESSAGE and is
# published as one message (default: the tutorial's lazy.mxt / "lalalala").
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
EXCHANGE = os.environ.get('EXCHANGE', 'topic_logs')

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

channel.exchange_declare(exchange=EXCHANGE, exchange_type='topic')

for arg in sys.argv[1:] or ['lazy.mxt']:
    routing_key, _, message = arg.partition('=')
    message = message or "lalalala"
    channel.basic_publish(exchange=EXCHANGE,
                          routing_key=routing_key,
                          body=message)
    print(" [x] Sent %r:%r" % (routing_key, message))
connection.close()
