# 簡單示例 — 生產者 (the founding tutorial's producer, pika 1.x API)
import os

# pika 0.13.1 uses collections.Callable, which Python 3.10 removed:
import collections, collections.abc; collections.Callable = collections.abc.Callable  # noqa: E401,E702

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ.get('QUEUE', 'hello')

# 封裝了socket對象(bind,listen)
connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
# 創建通道對象
channel = connection.channel()
# 聲明一個隊列
channel.queue_declare(queue=QUEUE)
# 向隊列中插入數據
channel.basic_publish(exchange='',
                      routing_key=QUEUE,
                      body='Hello World!')
print(" [x] Sent 'Hello World!'")
connection.close()  # 關閉鏈接
