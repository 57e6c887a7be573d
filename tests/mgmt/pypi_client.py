"""The management API through a maintained client from PyPI, amqpstorm's ManagementApi
(amqpstorm 3.1.4), as an application would use it: overview, whoami, vhosts, users and
permissions, exchanges and queues declared, bound, published to, got from, purged and deleted,
nodes, aliveness and health checks. Written against RabbitMQ 3.10 first; coney must answer
the client the same way. Runs in its own virtualenv (.venv/mgmt-client, scripts/pyenv.sh).

    .venv/mgmt-client/bin/python tests/mgmt/pypi_client.py --http PORT

Prints `ok` and exits 0, or prints what differed and exits 1.
"""
import argparse
import sys
import time

from amqpstorm.management import ApiError, ManagementApi

P = 'pypi-client-'


def wait_for(fn, what, timeout=20):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError('%s (last %r)' % (what, last))


def run(api):
    assert api.aliveness_test('/') == {'status': 'ok'}, 'aliveness'
    assert api.whoami()['name'] == 'guest', 'whoami'
    node = api.overview()['node']
    assert any(n['name'] == node and n['running'] for n in api.nodes()), 'nodes'
    assert api.node(node)['name'] == node, 'node'
    assert api.healthchecks.get() == {'status': 'ok'}, 'healthchecks'
    vh = P + 'vhost'
    api.virtual_host.create(vh)
    assert any(v['name'] == vh for v in api.virtual_host.list()), 'vhost listed'
    api.user.create(P + 'user', 'secret', tags='management')
    api.user.set_permission(P + 'user', vh, '.*', '.*', '.*')
    perm = api.user.get_permission(P + 'user', vh)
    assert (perm['configure'], perm['write'], perm['read']) == ('.*', '.*', '.*'), perm
    api.exchange.declare(P + 'x', 'topic', durable=True)
    api.queue.declare(P + 'q', durable=True, arguments={'x-max-length': 10})
    api.queue.bind(queue=P + 'q', exchange=P + 'x', routing_key='a.#')
    assert any(b['source'] == P + 'x' and b['routing_key'] == 'a.#'
               for b in api.queue.bindings(P + 'q')), 'binding'
    for i in range(3):
        assert api.basic.publish('m%d' % i, 'a.b', exchange=P + 'x') == {'routed': True}, 'routed'
    wait_for(lambda: api.queue.get(P + 'q').get('messages') == 3, 'three messages')
    got = api.basic.get(P + 'q', requeue=True, to_dict=True, count=2)
    assert [m['payload'] for m in got] == ['m0', 'm1'], got
    assert api.queue.get(P + 'q')['arguments'] == {'x-max-length': 10}, 'arguments'
    assert any(q['name'] == P + 'q' for q in api.queue.list(show_all=True)), 'queue listed'
    api.queue.purge(P + 'q')
    wait_for(lambda: api.queue.get(P + 'q').get('messages') == 0, 'purged')
    try:
        api.queue.get(P + 'missing')
        raise AssertionError('a missing queue was found')
    except ApiError as e:
        assert e.error_code == 404, e.error_code
    api.queue.delete(P + 'q')
    api.exchange.delete(P + 'x')
    api.user.delete(P + 'user')
    api.virtual_host.delete(vh)
    assert not any(v['name'] == vh for v in api.virtual_host.list()), 'vhost deleted'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--http', type=int, required=True)
    args = ap.parse_args()
    api = ManagementApi('http://127.0.0.1:%d' % args.http, 'guest', 'guest', timeout=30)
    try:
        run(api)
    except (AssertionError, ApiError) as e:
        print('pypi client: %s' % e)
        return 1
    print('ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
