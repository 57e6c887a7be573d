"""Disk use follows the backlog, not the history."""
import os
import time

import pika

from durlib import check, queue_count, time_limit

TOTAL = int(os.environ.get('SEGMENTS_TOTAL', '100000'))
BATCH = 2000
BODY = 500          # bytes: 100k messages write ~60 MB, several 16 MiB segments
MAX_DURING = 3      # segment files at any sample while the backlog is at most one batch
MAX_AFTER = 2       # once everything is acked


def seg_number(name):
    return int(name.split('.')[0])


@time_limit(90)
def test_segments_follow_backlog(t):
    """100k small persistent messages (500-byte bodies, ~60 MB of log in all) are
    published to a durable queue in batches of 2000 and each batch is consumed and acked
    (manual acks, multiple=True every 250) before the next. The message log keeps rotating
    (the segment numbers grow past 3) but never holds more than 3 segment files, and once
    everything is acked at most 2; after a clean restart the store recovers no message,
    the queue exists and is empty, and at most 2 segment files remain."""
    b = t.broker().start()
    conn = b.connect()
    pub = conn.channel()
    pub.queue_declare('cycle', durable=True)
    cons = conn.channel()
    cons.basic_qos(prefetch_count=1000)
    state = {'received': 0, 'last_tag': 0, 'acked_tag': 0, 'bad': 0}

    def on_message(ch, method, props, body):
        state['received'] += 1
        state['last_tag'] = method.delivery_tag
        if len(body) != BODY + 8 or props.delivery_mode != 2:
            state['bad'] += 1
        if state['received'] % 250 == 0:
            ch.basic_ack(method.delivery_tag, multiple=True)
            state['acked_tag'] = method.delivery_tag

    cons.basic_consume('cycle', on_message, auto_ack=False)
    props = pika.BasicProperties(delivery_mode=2)
    pad = b'x' * BODY
    max_files = 0
    max_seg = 0
    samples = []
    t0 = time.monotonic()
    sent = 0
    while sent < TOTAL:
        n = min(BATCH, TOTAL - sent)
        for i in range(sent, sent + n):
            pub.basic_publish('', 'cycle', b'%08d' % i + pad, props)
        sent += n
        pub.queue_declare('cycle', passive=True)   # a round trip: the batch is in the queue
        files = b.segment_files()                  # backlog: one batch
        max_files = max(max_files, len(files))
        check(len(files) <= MAX_DURING, 'with a backlog of %d messages, %d segment files: %s'
              % (n, len(files), files))
        deadline = time.monotonic() + 20
        while state['received'] < sent:
            check(time.monotonic() < deadline, 'consumed only %d of %d published within 20s'
                  % (state['received'], sent))
            conn.process_data_events(time_limit=0.05)
        if state['acked_tag'] != state['last_tag']:
            cons.basic_ack(state['last_tag'], multiple=True)
            state['acked_tag'] = state['last_tag']
        files = b.segment_files()
        samples.append(len(files))
        max_files = max(max_files, len(files))
        if files:
            max_seg = max(max_seg, seg_number(files[-1]))
        check(len(files) <= MAX_DURING, 'after %d messages published and acked, %d segment files: %s'
              % (sent, len(files), files))
    # a round trip on the same connection: every ack before it has been processed
    left = pub.queue_declare('cycle', passive=True).method.message_count
    elapsed = time.monotonic() - t0
    check(state['bad'] == 0, '%d messages came back with a wrong body size or mode' % state['bad'])
    check(left == 0, 'queue holds %d messages after everything was acked' % left)
    files = b.segment_files()
    sizes = sum(os.path.getsize(os.path.join(b.data_dir, 'msgs', f)) for f in files)
    t.report('%d messages published and acked in %.1fs (%.0f/s); segment files: at most %d '
             'during (highest segment number %d), %d after (%s, %.1f MB)'
             % (TOTAL, elapsed, TOTAL / elapsed, max_files, max_seg, len(files),
                ' '.join(files), sizes / 1e6))
    check(max_seg > 3, 'the log never rotated past segment 3 (highest %d): the test proves '
          'nothing about segment removal' % max_seg)
    check(len(files) <= MAX_AFTER, 'after everything was acked %d segment files remain: %s'
          % (len(files), files))
    conn.close()

    b.restart()
    rec = b.recovery()
    files = b.segment_files()
    t.report('after a clean restart: %r; segment files %s' % (rec, ' '.join(files)))
    check(rec['messages'] == 0, 'the store recovered %d messages; all were acked' % rec['messages'])
    check(queue_count(b, 'cycle') == 0, 'queue cycle: %s messages after the restart, expected 0'
          % queue_count(b, 'cycle'))
    check(len(files) <= MAX_AFTER, 'after the restart %d segment files remain: %s'
          % (len(files), files))
    b.term()
