# RPC with direct reply-to (pika 1.x API): the server.
# The same fib server as the tutorial's: it answers to props.reply_to with the request's
# correlation_id; it does not know that reply_to is a direct reply-to name.
# Bounded by STOP_AFTER requests and TIME_LIMIT seconds (exit status 3).
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
RPC_QUEUE = os.environ.get('RPC_QUEUE', 'rpc_queue')
STOP_AFTER = int(os.environ.get('STOP_AFTER', '0'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue=RPC_QUEUE)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


served = []


def on_request(ch, method, props, body):
    n = int(body)
    print(" [.] fib(%s) for %s" % (n, props.reply_to))
    ch.basic_publish(exchange='', routing_key=props.reply_to,
                     properties=pika.BasicProperties(correlation_id=props.correlation_id),
                     body=str(fib(n)))
    ch.basic_ack(delivery_tag=method.delivery_tag)
    served.append(n)
    if STOP_AFTER and len(served) >= STOP_AFTER:
        ch.stop_consuming()


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue=RPC_QUEUE, on_message_callback=on_request)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.call_later(TIME_LIMIT, time_limit)
print(" [x] Awaiting RPC requests")
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
