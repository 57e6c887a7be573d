"""Crash-test publisher (pika 1.x, asynchronous): publishes numbered persistent
messages to QUEUE with publisher confirms, keeping up to WINDOW unconfirmed.

Output (stdout, unbuffered, one line per event, written as it happens):
    READY                  confirm mode is on; publishing starts
    P <n>                  messages 1..n have been handed to the socket
    C <n> <n> ...          these numbers were confirmed (basic.ack) by the broker
    N <n> <n> ...          these numbers were nacked
    CLOSED <reason>        the connection is gone (the broker was killed); exit 0
Stops after LIMIT messages (then waits for their confirms and exits: DONE).
The body of message n is body(n) below; the drain checks it byte for byte.
"""
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
QUEUE = os.environ['QUEUE']
WINDOW = int(os.environ.get('WINDOW', '200'))
LIMIT = int(os.environ.get('LIMIT', '300000'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))


def body(n):
    return ('%d|' % n).encode() + bytes([n % 251]) * ((n * 7919) % 3001)


class Publisher:
    def __init__(self):
        self.channel = None
        self.published = 0
        self.reported = 0
        self.unconfirmed = {}    # publish seq -> message number, in publish order
        self.props = pika.BasicProperties(delivery_mode=2, content_type='application/octet-stream')
        self.conn = pika.SelectConnection(
            pika.ConnectionParameters(host=HOST, port=PORT, connection_attempts=1, socket_timeout=5),
            on_open_callback=self.on_open, on_open_error_callback=self.on_open_error,
            on_close_callback=self.on_close)

    def on_open(self, conn):
        conn.channel(on_open_callback=self.on_channel)
        conn.ioloop.call_later(TIME_LIMIT, lambda: self.conn.close())

    def on_open_error(self, conn, err):
        print('CLOSED open failed: %r' % (err,))
        conn.ioloop.stop()

    def on_close(self, conn, reason):
        print('CLOSED %r' % (reason,))
        conn.ioloop.stop()

    def on_channel(self, ch):
        self.channel = ch
        ch.confirm_delivery(ack_nack_callback=self.on_confirm, callback=self.on_confirm_mode)

    def on_confirm_mode(self, _frame):
        print('READY')
        self.publish_more()

    def publish_more(self):
        if not self.conn.is_open:
            return
        before = self.published
        while len(self.unconfirmed) < WINDOW and self.published < LIMIT:
            self.published += 1
            n = self.published
            self.unconfirmed[n] = n
            self.channel.basic_publish('', QUEUE, body(n), self.props)
        if self.published != before:
            print('P %d' % self.published)
        if self.published >= LIMIT and not self.unconfirmed:
            print('DONE')
            self.conn.close()

    def on_confirm(self, frame):
        m = frame.method
        tag = m.delivery_tag
        if m.multiple:
            done = [k for k in self.unconfirmed if k <= tag]
        else:
            done = [tag] if tag in self.unconfirmed else []
        for k in done:
            del self.unconfirmed[k]
        kind = 'C' if isinstance(m, pika.spec.Basic.Ack) else 'N'
        if done:
            print('%s %s' % (kind, ' '.join(map(str, done))))
        self.publish_more()


p = Publisher()
try:
    p.conn.ioloop.start()
except Exception as e:  # noqa: BLE001
    print('CLOSED exception %r' % (e,))
sys.exit(0)
