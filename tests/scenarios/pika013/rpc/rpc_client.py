# 基于rabbitMQ的RPC — 客戶端 (pika 0.13.1: the tutorial's own API)
# Requests fib(n) for every n on the command line (default: the tutorial's 30).
# Each call waits at most RPC_TIMEOUT seconds for its answer (exit status 3).
import os
import sys
import time
import uuid

# pika 0.13.1 uses collections.Callable, which Python 3.10 removed:
import collections, collections.abc; collections.Callable = collections.abc.Callable  # noqa: E401,E702

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
RPC_QUEUE = os.environ.get('RPC_QUEUE', 'rpc_queue')
RPC_TIMEOUT = float(os.environ.get('RPC_TIMEOUT', '15'))


class FibonacciRpcClient(object):
    def __init__(self):
        """
        客戶端啟動時,創建回調隊列,會開啟會話用於發送RPC請求以及接受響應
        """
        # 建立連接,指定服務器的ip地址
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(
            host=HOST, port=PORT))
        # 建立一個會話,每個channel代表一個會話任務
        self.channel = self.connection.channel()
        # 聲明回調隊列,再次聲明的原因是,服務器和客戶端可能先後開啟,該聲明是冪等的,多次聲明,但只生效一次
        result = self.channel.queue_declare(exclusive=True)
        # 將次隊列指定為當前客戶端的回調隊列
        self.callback_queue = result.method.queue
        print(" [*] Callback queue %s" % self.callback_queue)
        # 客戶端訂閱回調隊列,當回調隊列中有響應時,調用`on_response`方法對響應進行處理;
        self.channel.basic_consume(self.on_response, no_ack=True,
                                   queue=self.callback_queue)

    # 對回調隊列中的響應進行處理的函數
    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body
        else:
            print(" [!] Ignoring response with correlation_id %r" % props.correlation_id)

    # 發出RPC請求
    def call(self, n):
        # 初始化 response
        self.response = None
        # 生成correlation_id
        self.corr_id = str(uuid.uuid4())
        # 發送RPC請求內容到RPC請求隊列`rpc_queue`,同時發送的還有`reply_to`和`correlation_id`
        self.channel.basic_publish(exchange='',
                                   routing_key=RPC_QUEUE,
                                   properties=pika.BasicProperties(
                                       reply_to=self.callback_queue,
                                       correlation_id=self.corr_id,
                                   ),
                                   body=str(n))
        deadline = time.monotonic() + RPC_TIMEOUT
        while self.response is None:
            if time.monotonic() > deadline:
                print(" [!] No response for fib(%s) within %ss" % (n, RPC_TIMEOUT))
                sys.exit(3)
            self.connection.process_data_events(time_limit=0.5)
        return int(self.response)


# 建立客戶端
fibonacci_rpc = FibonacciRpcClient()

# 發送RPC請求
for n in sys.argv[1:] or ['30']:
    print(" [x] Requesting fib(%s)" % n)
    response = fibonacci_rpc.call(int(n))
    print(" [.] Got %r" % response)
fibonacci_rpc.connection.close()
