"""AMQP side of the web page test, with pika (an independent client): the test drives the
broker through this while it watches the page.

    python amqp.py serve PORT      one JSON command per stdin line, one JSON answer per line
    python amqp.py pump PORT QUEUE SECONDS
                                   publish one message and basic.get + ack it, about 20 times a
                                   second, for at most SECONDS (feeds the page's rate chart)

serve commands (answers are {"ok": true, ...} or {"ok": false, "error": "..."}):
    {"cmd": "fill", "queue": Q, "n": N}    declare Q (non-durable) and publish N persistent
                                           messages with publisher confirms
    {"cmd": "declare", "queue": Q}         declare Q (non-durable)
    {"cmd": "count", "queue": Q}           passive declare: {"exists": bool, "messages": n}
    {"cmd": "delete", "queue": Q}          queue.delete
    {"cmd": "hold", "name": NAME}          open a second connection whose client-provided
                                           connection_name is NAME and keep it
    {"cmd": "held", "wait": S}             serve the held connection's events for up to S
                                           seconds: {"closed": bool, "code": c, "text": t}
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'lib'))
import brokerlib  # noqa: E402
import pika  # noqa: E402
import pika.exceptions  # noqa: E402


def connect(port, name=None):
    props = {'connection_name': name} if name else None
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=brokerlib.HOST, port=port, heartbeat=0, blocked_connection_timeout=30,
        socket_timeout=10, client_properties=props))


class Session:
    def __init__(self, port):
        self.port = port
        self.conn = connect(port)
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        self.held = None

    def fill(self, queue, n):
        self.ch.queue_declare(queue=queue)
        props = pika.BasicProperties(delivery_mode=2, content_type='text/plain')
        for i in range(n):
            self.ch.basic_publish('', queue, ('message %d' % i).encode(), props, mandatory=True)
        return {}

    def declare(self, queue):
        self.ch.queue_declare(queue=queue)
        return {}

    def count(self, queue):
        try:
            ok = self.ch.queue_declare(queue=queue, passive=True)
            return {'exists': True, 'messages': ok.method.message_count}
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
            self.ch = self.conn.channel()
            self.ch.confirm_delivery()
            return {'exists': False, 'messages': None}

    def delete(self, queue):
        self.ch.queue_delete(queue=queue)
        return {}

    def hold(self, name):
        self.held = connect(self.port, name)
        self.held.channel()
        return {}

    def held_status(self, wait):
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                self.held.process_data_events(time_limit=0.2)
                if self.held.is_closed:
                    return {'closed': True, 'code': None, 'text': 'closed'}
        except pika.exceptions.ConnectionClosedByBroker as e:
            return {'closed': True, 'code': e.reply_code, 'text': e.reply_text}
        except pika.exceptions.AMQPConnectionError as e:
            return {'closed': True, 'code': None, 'text': repr(e)}
        return {'closed': False}

    def run(self, req):
        cmd = req.get('cmd')
        if cmd == 'fill':
            return self.fill(req['queue'], int(req['n']))
        if cmd == 'declare':
            return self.declare(req['queue'])
        if cmd == 'count':
            return self.count(req['queue'])
        if cmd == 'delete':
            return self.delete(req['queue'])
        if cmd == 'hold':
            return self.hold(req['name'])
        if cmd == 'held':
            return self.held_status(float(req.get('wait', 10)))
        raise ValueError('unknown command %r' % cmd)


def serve(port):
    session = Session(port)
    print(json.dumps({'ok': True, 'ready': True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = session.run(json.loads(line))
            out['ok'] = True
        except Exception as e:  # every failure goes back to the test as an answer
            out = {'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)


def pump(port, queue, seconds):
    conn = connect(port)
    ch = conn.channel()
    ch.queue_declare(queue=queue)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ch.basic_publish('', queue, b'rate sample')
        method, _, _ = ch.basic_get(queue)
        if method is not None:
            ch.basic_ack(method.delivery_tag)
        conn.sleep(0.05)
    conn.close()


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == 'serve':
        serve(int(sys.argv[2]))
    elif len(sys.argv) >= 5 and sys.argv[1] == 'pump':
        pump(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
