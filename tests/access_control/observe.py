"""Access-control outcomes of RabbitMQ, observed with pika: which operation each user's
permissions allow, with the exact reply code and text. src/auth/check.rs replays these rows.

    scripts/rabbitmq.sh start 5693 /tmp/rmq-auth
    .venv/pika1/bin/python tests/access_control/observe.py 5693 /tmp/rmq-auth

Creates users, vhosts and limits on that node with rabbitmqctl; prints one row per operation.
"""
import subprocess
import pika, sys, json


def ctl(*args):
    subprocess.run(['scripts/rabbitmq.sh', 'ctl', sys.argv[2]] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)

def setup_users():
    ctl('add_vhost', 'v1'); ctl('set_permissions', '-p', 'v1', 'guest', '.*', '.*', '.*')
    users = [('u_none',), ('u_empty', '', '', ''), ('u_anchor', 'q', '.*', '.*'),
             ('u_gen', '^amq\\.gen.*', '.*', '.*'), ('u_rw', '.*', '^dst', '^src'),
             ('u_ae1', '.*', '^ae-ok', '^$'), ('u_ae2', '.*', '^ae-ok', '.*'),
             ('u_dflt', '.*', '^amq\\.default$', '.*'), ('u_x', '.*', '^x$', '.*'),
             ('u_t', '.*', '.*', '.*'), ('u_imp', '.*', '.*', '.*'), ('u_uni', '^\\w+$', '^é', '.*'),
             ('u_lim', '.*', '.*', '.*')]
    for u in users:
        ctl('add_user', u[0], 'p')
        if len(u) > 1:
            ctl('set_permissions', '-p', '/', *u)
    ctl('set_user_tags', 'u_imp', 'impersonator')
    ctl('set_topic_permissions', '-p', '/', 'u_t', 'amq.topic', '^{username}\\.', '^{vhost}-r$')
    ctl('set_topic_permissions', '-p', '/', 'u_t', 'tx3', '^{client_id}$', '')
    ctl('set_topic_permissions', '-p', '/', 'u_t', 'txd', '^nothing$', '^nothing$')
    ctl('set_topic_permissions', '-p', '/', 'u_t', 'txn', '^a$', 'a{2}|b{,}|c{x')
    ctl('set_vhost_limits', '-p', 'v1', '{"max-queues": 1, "max-connections": 1}')
    ctl('add_vhost', 'v2'); ctl('set_permissions', '-p', 'v2', 'guest', '.*', '.*', '.*')
    ctl('set_vhost_limits', '-p', 'v2', '{"max-queues": 0, "max-connections": 0}')
    ctl('set_user_limits', 'u_lim', '{"max-connections": 1, "max-channels": 2}')

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5693

def params(user, vhost='/', props=None):
    return pika.ConnectionParameters('127.0.0.1', PORT, vhost, pika.PlainCredentials(user, 'guest' if user == 'guest' else 'p'),
                                     client_properties=props, connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5)

def run(user, action, vhost='/', props=None):
    try:
        conn = pika.BlockingConnection(params(user, vhost, props))
    except pika.exceptions.ProbableAccessDeniedError as e:
        return 'conn refused: %r' % (e.args,)
    except pika.exceptions.ConnectionClosedByBroker as e:
        return 'conn closed: %s %s' % (e.reply_code, e.reply_text)
    except Exception as e:
        return 'conn error: %r' % (e,)
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        r = action(ch)
        res = 'ok' + ('' if r is None else ' ' + str(r))
    except pika.exceptions.ChannelClosedByBroker as e:
        res = '%s %s' % (e.reply_code, e.reply_text)
    except pika.exceptions.ConnectionClosedByBroker as e:
        res = 'conn %s %s' % (e.reply_code, e.reply_text)
    try:
        conn.close()
    except Exception:
        pass
    return res

def setup():
    c = pika.BlockingConnection(params('guest'))
    ch = c.channel()
    for q in ['pre', 'srcq', 'dstq', 'otherq']:
        ch.queue_declare(q)
    for x, t in [('srcx', 'topic'), ('dstx', 'fanout'), ('otherx', 'fanout'), ('ae-ok', 'fanout'), ('ae-no', 'fanout'), ('dlx-no', 'fanout'), ('tx3', 'topic'), ('txd', 'direct'), ('x', 'direct')]:
        ch.exchange_declare(x, t)
    c.close()

setup_users()
setup()
pub = lambda x, k='k', props=None: (lambda ch: ch.basic_publish(x, k, b'm', props))
cases = [
 ('u_none', 'connect', lambda ch: None),
 ('u_empty', 'publish default exchange', pub('')),
 ('u_empty', 'declare server-named queue', lambda ch: ch.queue_declare('')),
 ('u_empty', 'declare queue q', lambda ch: ch.queue_declare('q')),
 ('u_empty', 'passive declare queue pre', lambda ch: ch.queue_declare('pre', passive=True).method.queue),
 ('u_empty', 'passive declare exchange amq.topic', lambda ch: ch.exchange_declare('amq.topic', passive=True)),
 ('u_empty', 'declare exchange e1', lambda ch: ch.exchange_declare('e1')),
 ('u_empty', 'redeclare existing queue pre', lambda ch: ch.queue_declare('pre')),
 ('u_anchor', 'declare xqx (unanchored)', lambda ch: ch.queue_declare('xqx', auto_delete=True)),
 ('u_anchor', 'declare abc', lambda ch: ch.queue_declare('abc')),
 ('u_gen', 'declare server-named', lambda ch: ch.queue_declare('', exclusive=True).method.queue[:8]),
 ('u_gen', 'declare q', lambda ch: ch.queue_declare('q')),
 ('u_rw', 'bind dstq<-srcx', lambda ch: ch.queue_bind('dstq', 'srcx', 'k')),
 ('u_rw', 'bind otherq<-srcx', lambda ch: ch.queue_bind('otherq', 'srcx', 'k')),
 ('u_rw', 'bind dstq<-otherx', lambda ch: ch.queue_bind('dstq', 'otherx', 'k')),
 ('u_rw', 'bind otherq<-otherx', lambda ch: ch.queue_bind('otherq', 'otherx', 'k')),
 ('u_rw', 'bind dstq<-default', lambda ch: ch.queue_bind('dstq', '', 'k')),
 ('u_rw', 'bind dstq<-nosuchsrc', lambda ch: ch.queue_bind('dstq', 'srcnosuch', 'k')),
 ('u_rw', 'bind nosuchq<-srcx (write dst fails?)', lambda ch: ch.queue_bind('nosuchq', 'srcx', 'k')),
 ('u_rw', 'unbind otherq<-srcx', lambda ch: ch.queue_unbind('otherq', 'srcx', 'k')),
 ('u_rw', 'e2e bind dstx<-srcx', lambda ch: ch.exchange_bind('dstx', 'srcx', 'k')),
 ('u_rw', 'e2e bind otherx<-srcx', lambda ch: ch.exchange_bind('otherx', 'srcx', 'k')),
 ('u_rw', 'e2e bind dstx<-otherx', lambda ch: ch.exchange_bind('dstx', 'otherx', 'k')),
 ('u_rw', 'e2e unbind dstx<-otherx', lambda ch: ch.exchange_unbind('dstx', 'otherx', 'k')),
 ('u_rw', 'publish srcx', pub('srcx')),
 ('u_rw', 'publish dstx', pub('dstx')),
 ('u_rw', 'publish nosuch (no write)', pub('nosuch')),
 ('u_rw', 'publish dstnosuch (write ok)', pub('dstnosuch')),
 ('u_rw', 'get srcq', lambda ch: ch.basic_get('srcq')[0]),
 ('u_rw', 'get dstq', lambda ch: ch.basic_get('dstq')),
 ('u_rw', 'consume dstq', lambda ch: ch.basic_consume('dstq', lambda *a: None)),
 ('u_rw', 'purge dstq', lambda ch: ch.queue_purge('dstq')),
 ('u_rw', 'purge srcq', lambda ch: ch.queue_purge('srcq').method.message_count),
 ('u_empty', 'delete queue pre', lambda ch: ch.queue_delete('pre')),
 ('u_empty', 'delete exchange srcx', lambda ch: ch.exchange_delete('srcx')),
 ('u_empty', 'delete exchange amq.topic', lambda ch: ch.exchange_delete('amq.topic')),
 ('u_empty', 'delete nosuch queue', lambda ch: ch.queue_delete('nosuchq')),
 ('u_ae1', 'declare xa with AE ae-ok (read ^$)', lambda ch: ch.exchange_declare('xa', arguments={'alternate-exchange': 'ae-ok'})),
 ('u_ae2', 'declare xa2 with AE ae-no', lambda ch: ch.exchange_declare('xa2', arguments={'alternate-exchange': 'ae-no'})),
 ('u_ae2', 'declare xa3 with AE ae-ok', lambda ch: ch.exchange_declare('xa3', auto_delete=True, arguments={'alternate-exchange': 'ae-ok'})),
 ('u_ae1', 'declare qd with DLX ae-ok (read ^$)', lambda ch: ch.queue_declare('qd', arguments={'x-dead-letter-exchange': 'ae-ok'})),
 ('u_ae2', 'declare qd2 with DLX dlx-no', lambda ch: ch.queue_declare('qd2', arguments={'x-dead-letter-exchange': 'dlx-no'})),
 ('u_ae2', 'declare existing pre with DLX dlx-no', lambda ch: ch.queue_declare('pre', arguments={'x-dead-letter-exchange': 'dlx-no'})),
 ('u_ae2', 'declare qd3 with DLX "" (default)', lambda ch: ch.queue_declare('qd3', auto_delete=True, arguments={'x-dead-letter-exchange': ''})),
 ('u_dflt', 'publish default exchange', pub('')),
 ('u_x', 'publish default exchange', pub('')),
 ('u_t', 'publish amq.topic u_t.a', pub('amq.topic', 'u_t.a')),
 ('u_t', 'publish amq.topic x.a', pub('amq.topic', 'x.a')),
 ('u_t', 'bind pre<-amq.topic key /-r', lambda ch: ch.queue_bind('pre', 'amq.topic', '/-r')),
 ('u_t', 'bind pre<-amq.topic key other', lambda ch: ch.queue_bind('pre', 'amq.topic', 'other')),
 ('u_t', 'unbind pre<-amq.topic key other', lambda ch: ch.queue_unbind('pre', 'amq.topic', 'other')),
 ('u_t', 'publish tx3 key {client_id}', pub('tx3', '{client_id}')),
 ('u_t', 'publish tx3 key cid1 (client_id=cid1 in props)', None),
 ('u_t', 'bind pre<-tx3 key "" (read "")', lambda ch: ch.queue_bind('pre', 'tx3', '')),
 ('u_t', 'bind pre<-tx3 key a (read "")', lambda ch: ch.queue_bind('pre', 'tx3', 'a')),
 ('u_t', 'publish txd (direct) key other', pub('txd', 'other')),
 ('u_t', 'publish amq.topic key u_t.a\\n? (trailing newline)', pub('amq.topic', 'u_tXa')),
 ('u_t', 'publish with user_id someone', pub('amq.direct', 'k', pika.BasicProperties(user_id='someone'))),
 ('u_t', 'publish with user_id u_t', pub('amq.direct', 'k', pika.BasicProperties(user_id='u_t'))),
 ('u_imp', 'publish with user_id someone', pub('amq.direct', 'k', pika.BasicProperties(user_id='someone'))),
 ('u_uni', 'declare queue é (configure ^\\w+$)', lambda ch: ch.queue_declare('é')),
 ('u_uni', 'declare queue abc_1 (configure ^\\w+$)', lambda ch: ch.queue_declare('abc_1', auto_delete=True)),
 ('u_uni', 'publish exchange é1 (write ^é)', pub('é1')),
]
out = []
for user, name, act in cases:
    if act is None:
        r = run(user, pub('tx3', 'cid1'), props={'client_id': 'cid1'})
    else:
        r = run(user, act)
    out.append((user, name, r))
    print('%-9s %-50s -> %s' % (user, name, r))

c = pika.BlockingConnection(params('guest')); ch = c.channel(); ch.exchange_declare('txn', 'topic'); c.close()
pub = lambda x, k='k', props=None: (lambda ch: ch.basic_publish(x, k, b'm', props))
for user, name, act in [
  ('u_t', 'publish txn key "a\\n" (write ^a$)', pub('txn', 'a\n')),
  ('u_t', 'publish txn key "a" (write ^a$)', pub('txn', 'a')),
  ('u_t', 'publish txn key "a\\n\\n" (write ^a$)', pub('txn', 'a\n\n')),
  ('u_t', 'bind pre<-txn key aa (read a{2}|b{,}|c{x)', lambda ch: ch.queue_bind('pre', 'txn', 'aa')),
  ('u_t', 'bind pre<-txn key b{,} ', lambda ch: ch.queue_bind('pre', 'txn', 'b{,}')),
  ('u_t', 'bind pre<-txn key c{x ', lambda ch: ch.queue_bind('pre', 'txn', 'c{x')),
  ('u_t', 'bind pre<-txn key b ', lambda ch: ch.queue_bind('pre', 'txn', 'b')),
]:
    print('%-9s %-50s -> %s' % (user, name, run(user, act)))
print('unknown vhost:', run('guest', lambda ch: None, vhost='nope'))
def two_queues(ch):
    ch.queue_declare('a1', auto_delete=True)
    ch.queue_declare('a1', auto_delete=True)
    ch.queue_declare('a2', auto_delete=True)
print('max-queues 1 in v1:', run('guest', two_queues, vhost='v1'))
print('max-queues 0 in v2:', run('guest', lambda ch: ch.queue_declare('z'), vhost='v2'))
print('max-connections 0 in v2:', run('guest', lambda ch: None, vhost='v2'))
c1 = pika.BlockingConnection(params('guest', 'v1'))
print('2nd conn to v1 (max-connections 1):', run('guest', lambda ch: None, vhost='v1'))
c1.close()
c1 = pika.BlockingConnection(params('u_lim'))
print('2nd conn u_lim (user max-connections 1):', run('u_lim', lambda ch: None))
c1.close()
def chans(ch):
    conn = ch.connection
    conn.channel(); conn.channel()
print('3rd channel u_lim (max-channels 2):', run('u_lim', chans))
