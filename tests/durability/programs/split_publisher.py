"""Compaction-test publisher (pika 1.x, asynchronous): publishes numbered persistent
messages of SIZE bytes with publisher confirms, keeping up to WINDOW unconfirmed: message n
goes to queue KEEP if n % KEEP_EVERY == 0, else to FLOW. So KEEP holds a thin layer of
messages spread over every segment of the log while FLOW's are consumed.

Output (stdout, unbuffered): READY, then `P <n>` (1..n handed to the socket), `C <n> ...`
(confirmed), `N <n> ...` (nacked), `CLOSED <reason>`; DONE after LIMIT confirmed.
"""
import os
import sys

import pika

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
KEEP = os.environ['KEEP']
FLOW = os.environ['FLOW']
KEEP_EVERY = int(os.environ.get('KEEP_EVERY', '10'))
SIZE = int(os.environ.get('SIZE', '4000'))
START = int(os.environ.get('START', '1'))
WINDOW = int(os.environ.get('WINDOW', '300'))
LIMIT = int(os.environ.get('LIMIT', '1000000'))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', '30'))


def body(n):
    head = ('%d|' % n).encode()
    return head + bytes([n % 251]) * (SIZE - len(head))


def queue_of(n):
    return KEEP if n % KEEP_EVERY == 0 else FLOW


class Publisher:
    def __init__(self):
        self.channel = None
        self.next = START
        self.unconfirmed = {}
        self.confirmed = 0
        self.props = pika.BasicProperties(delivery_mode=2)
        self.conn = pika.SelectConnection(
            pika.ConnectionParameters(host=HOST, port=PORT, connection_attempts=1, socket_timeout=5),
            on_open_callback=self.on_open, on_open_error_callback=self.on_close,
            on_close_callback=self.on_close)

    def on_open(self, conn):
        conn.channel(on_open_callback=self.on_channel)
        conn.ioloop.call_later(TIME_LIMIT, lambda: self.conn.close())

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
        before = self.next
        seq = self.confirmed + len(self.unconfirmed)
        while len(self.unconfirmed) < WINDOW and self.next < START + LIMIT:
            seq += 1
            self.unconfirmed[seq] = self.next
            self.channel.basic_publish('', queue_of(self.next), body(self.next), self.props)
            self.next += 1
        if self.next != before:
            print('P %d' % (self.next - 1))
        if self.next >= START + LIMIT and not self.unconfirmed:
            print('DONE')
            self.conn.close()

    def on_confirm(self, frame):
        m = frame.method
        tags = [k for k in self.unconfirmed if k <= m.delivery_tag] if m.multiple else [m.delivery_tag]
        done = [self.unconfirmed.pop(k) for k in tags if k in self.unconfirmed]
        self.confirmed += len(done)
        if done:
            kind = 'C' if isinstance(m, pika.spec.Basic.Ack) else 'N'
            print('%s %s' % (kind, ' '.join(map(str, done))))
        self.publish_more()


p = Publisher()
try:
    p.conn.ioloop.start()
except Exception as e:  # noqa: BLE001
    print('CLOSED exception %r' % (e,))
sys.exit(0)
