# 關鍵字發送 direct — 消費者 (pika 1.x API)
# The binding keys come from the command line (default: the tutorial's
# 消費者1, ['info', 'error', 'warning']).  Bounded for the harness: stops on a message whose body is
# END, on Ctrl-C, or after TIME_LIMIT seconds (exit status 3).
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
EXCHANGE = os.environ.get('EXCHANGE', 'direct_logs')
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

channel.exchange_declare(exchange=EXCHANGE, exchange_type='direct')

result = channel.queue_declare(queue='', exclusive=True)
queue_name = result.method.queue

severities = sys.argv[1:] or ['info', 'error', 'warning']
for severity in severities:
    channel.queue_bind(exchange=EXCHANGE,
                       queue=queue_name,
                       routing_key=severity)

print(' [*] Queue %s' % queue_name)
print(' [*] Waiting for logs. To exit press CTRL+C')


def callback(ch, method, properties, body):
    print(" [x] %r:%r" % (method.routing_key, body))
    if body == b'END':
        ch.stop_consuming()


channel.basic_consume(queue=queue_name,
                      on_message_callback=callback,
                      auto_ack=True)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.call_later(TIME_LIMIT, time_limit)

try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
