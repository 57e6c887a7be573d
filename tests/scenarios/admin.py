"""Management helpers for the scenario checks; runs under pika 0.13 or 1.x.

    admin.py count QUEUE              -> {"messages": N, "consumers": N}
    admin.py absent QUEUE             -> {"absent": true|false, "code": reply code}
    admin.py redeclare QUEUE durable=0|1 ...
                                      -> {"ok": bool, "code": reply code}
    admin.py cleanup q:QUEUE x:EXCHANGE ...  (delete, ignoring errors)
    admin.py product                  -> {"product": the broker's product name}

Prints one JSON line. Broker address from AMQP_HOST / AMQP_PORT.
"""
import collections
import collections.abc
collections.Callable = collections.abc.Callable  # pika 0.13 on Python 3.10+

import json
import os
import sys

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lib'))
from brokerlib import pika_connect, reply_code  # noqa: E402

HOST = os.environ.get('AMQP_HOST', '127.0.0.1')
PORT = int(os.environ.get('AMQP_PORT', '5672'))
PIKA1 = not pika.__version__.startswith('0.')


def main(argv):
    cmd = argv[0]
    conn = pika_connect(PORT, HOST)
    try:
        ch = conn.channel()
        if cmd == 'count':
            ok = ch.queue_declare(queue=argv[1], passive=True)
            out = {'messages': ok.method.message_count, 'consumers': ok.method.consumer_count}
        elif cmd == 'absent':
            try:
                ch.queue_declare(queue=argv[1], passive=True)
                out = {'absent': False, 'code': None}
            except pika.exceptions.ChannelClosed as e:
                out = {'absent': reply_code(e) == 404, 'code': reply_code(e)}
        elif cmd == 'redeclare':
            kwargs = {}
            for a in argv[2:]:
                k, v = a.split('=', 1)
                kwargs[k] = bool(int(v))
            try:
                ch.queue_declare(queue=argv[1], **kwargs)
                out = {'ok': True, 'code': None}
            except pika.exceptions.ChannelClosed as e:
                out = {'ok': False, 'code': reply_code(e)}
        elif cmd == 'product':
            product = conn._impl.server_properties.get('product', '')
            if isinstance(product, bytes):
                product = product.decode('utf-8', 'replace')
            out = {'product': product}
        elif cmd == 'cleanup':
            errors = []
            for item in argv[1:]:
                kind, name = item.split(':', 1)
                try:
                    if not ch.is_open:
                        ch = conn.channel()
                    if kind == 'q':
                        ch.queue_delete(queue=name)
                    else:
                        ch.exchange_delete(exchange=name)
                except pika.exceptions.ChannelClosed as e:
                    errors.append('%s: %s' % (item, reply_code(e)))
            out = {'errors': errors}
        else:
            raise SystemExit('unknown command %r' % cmd)
    finally:
        try:
            conn.close()
        except Exception:
            pass
    print(json.dumps(out))


if __name__ == '__main__':
    main(sys.argv[1:])
