# Delayed retry with TTL + dead-letter exchange (pika 1.x API): the topology.
# WORK_QUEUE dead-letters what the worker rejects into RETRY_QUEUE; RETRY_QUEUE holds
# each message RETRY_MS milliseconds (x-message-ttl) and dead-letters it back.
import os

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
WORK_QUEUE = os.environ.get('WORK_QUEUE', 'work')
RETRY_QUEUE = os.environ.get('RETRY_QUEUE', 'work.retry')
RETRY_MS = int(os.environ.get('RETRY_MS', '500'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue=WORK_QUEUE, durable=True, arguments={
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': RETRY_QUEUE,
})
channel.queue_declare(queue=RETRY_QUEUE, durable=True, arguments={
    'x-message-ttl': RETRY_MS,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': WORK_QUEUE,
})
print(" [*] Declared %s and %s (retry after %d ms)" % (WORK_QUEUE, RETRY_QUEUE, RETRY_MS))
connection.close()
