# RPC with direct reply-to (pika 1.x API): the client.
# No callback queue: the client consumes the pseudo-queue amq.rabbitmq.reply-to with
# auto_ack (required) before it publishes, and sends reply_to='amq.rabbitmq.reply-to'.
# Requests fib(n) for every n on the command line; each call waits at most RPC_TIMEOUT
# seconds for its answer (exit status 3).
import os
import sys
import time
import uuid

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
RPC_QUEUE = os.environ.get('RPC_QUEUE', 'rpc_queue')
RPC_TIMEOUT = float(os.environ.get('RPC_TIMEOUT', '15'))
REPLY_TO = 'amq.rabbitmq.reply-to'


class FibonacciRpcClient(object):
    def __init__(self):
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
        self.channel = self.connection.channel()
        self.channel.basic_consume(queue=REPLY_TO, on_message_callback=self.on_response,
                                   auto_ack=True)

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body
        else:
            print(" [!] Ignoring response with correlation_id %r" % props.correlation_id)

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(exchange='', routing_key=RPC_QUEUE,
                                   properties=pika.BasicProperties(reply_to=REPLY_TO,
                                                                   correlation_id=self.corr_id),
                                   body=str(n))
        deadline = time.monotonic() + RPC_TIMEOUT
        while self.response is None:
            if time.monotonic() > deadline:
                print(" [!] No response for fib(%s) within %ss" % (n, RPC_TIMEOUT))
                sys.exit(3)
            self.connection.process_data_events(time_limit=0.5)
        return int(self.response)


fibonacci_rpc = FibonacciRpcClient()
for n in sys.argv[1:] or ['30']:
    print(" [x] Requesting fib(%s)" % n)
    response = fibonacci_rpc.call(int(n))
    print(" [.] Got %r" % response)
fibonacci_rpc.connection.close()
