# 基于rabbitMQ的RPC — 服務器端 (pika 0.13.1: the tutorial's own API)
# Bounded for the harness: stops after STOP_AFTER requests (if set), on
# Ctrl-C, or after TIME_LIMIT seconds (exit status 3).
import os
import sys

# pika 0.13.1 uses collections.Callable, which Python 3.10 removed:
import collections, collections.abc; collections.Callable = collections.abc.Callable  # noqa: E401,E702

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
RPC_QUEUE = os.environ.get('RPC_QUEUE', 'rpc_queue')
STOP_AFTER = int(os.environ.get('STOP_AFTER', '0'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

# 聲明RPC請求隊列
channel.queue_declare(queue=RPC_QUEUE)


# 數據處理方法
def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


served = []


# 對RPC請求隊列中的請求進行處理
def on_request(ch, method, props, body):
    n = int(body)
    print(" [.] fib(%s)" % n)
    # 調用數據處理方法
    response = fib(n)
    # 將處理結果(響應)發送到回調隊列
    ch.basic_publish(exchange='',
                     routing_key=props.reply_to,
                     properties=pika.BasicProperties(correlation_id=props.correlation_id),
                     body=str(response))
    ch.basic_ack(delivery_tag=method.delivery_tag)
    served.append(n)
    if STOP_AFTER and len(served) >= STOP_AFTER:
        ch.stop_consuming()


# 負載均衡,同一時刻發送給該服務器的請求不超過一個
channel.basic_qos(prefetch_count=1)
# 服務器訂閱RPC請求隊列,當隊列中有請求時,將調用`on_request`方法處理請求
channel.basic_consume(on_request, queue=RPC_QUEUE)

timed_out = []


def time_limit():
    timed_out.append(True)
    print(' [!] Time limit reached')
    channel.stop_consuming()


connection.add_timeout(TIME_LIMIT, time_limit)

print(" [x] Awaiting RPC requests")
try:
    channel.start_consuming()
except KeyboardInterrupt:
    print(' [*] Interrupted')
connection.close()
sys.exit(3 if timed_out else 0)
