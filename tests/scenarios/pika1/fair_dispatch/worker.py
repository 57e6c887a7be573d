# 消息獲取順序 — 消費者 (pika 1.x API)
# channel.basic_qos(prefetch_count=1) 表示誰來誰取: a busy worker gets no new
# message until it has acked the previous one.
# WORK_SECONDS replaces the tutorial's time.sleep(5); stops on Ctrl-C
# (SIGINT) or after TIME_LIMIT seconds (exit status 3).
import os
import sys
import time

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'hello')
WORK_SECONDS = float(os.environ.get('WORK_SECONDS', '5'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

# make message persistent
channel.queue_declare(queue=QUEUE)


def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)
    time.sleep(WORK_SECONDS)
    print('ok')
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)  # 這個配置生效
channel.basic_consume(queue=QUEUE,
                      on_message_callback=callback,
                      auto_ack=False)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.call_later(TIME_LIMIT, time_limit)

print(' [*] Waiting for messages. To exit press CTRL+C')
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
try:
    connection.close()
except Exception:
    pass
sys.exit(3 if timed_out else 0)
