# Delayed retry with TTL + dead-letter exchange (pika 1.x API): the worker.
# A job "fails" until its ATTEMPTS-th delivery: the worker rejects it (requeue=False), the
# broker dead-letters it to the retry queue, which gives it back after its TTL. The attempt
# number comes from the x-death header: the count of the (work queue, rejected) entry.
# Bounded by STOP_AFTER finished jobs and TIME_LIMIT seconds (exit status 3).
import os
import sys
import time

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
WORK_QUEUE = os.environ.get('WORK_QUEUE', 'work')
RETRY_QUEUE = os.environ.get('RETRY_QUEUE', 'work.retry')
ATTEMPTS = int(os.environ.get('ATTEMPTS', '3'))
STOP_AFTER = int(os.environ.get('STOP_AFTER', '0'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.basic_qos(prefetch_count=1)


def death_count(properties, queue, reason):
    for death in (properties.headers or {}).get('x-death', []):
        if death.get('queue') == queue and death.get('reason') == reason:
            return int(death.get('count', 0))
    return 0


done = []


def callback(ch, method, properties, body):
    rejected = death_count(properties, WORK_QUEUE, 'rejected')
    expired = death_count(properties, RETRY_QUEUE, 'expired')
    attempt = rejected + 1
    print(" [x] %s attempt %d at %.3f (x-death: rejected %d, expired %d)"
          % (body.decode(), attempt, time.time(), rejected, expired))
    if attempt < ATTEMPTS:
        ch.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
        return
    ch.basic_ack(delivery_tag=method.delivery_tag)
    print(" [.] %s done after %d attempts" % (body.decode(), attempt))
    done.append(body)
    if STOP_AFTER and len(done) >= STOP_AFTER:
        ch.stop_consuming()


channel.basic_consume(queue=WORK_QUEUE, on_message_callback=callback, auto_ack=False)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.call_later(TIME_LIMIT, time_limit)
print(' [*] Waiting for jobs. To exit press CTRL+C')
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
