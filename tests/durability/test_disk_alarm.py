"""The disk alarm on a real small filesystem: raised when it fills, cleared when space
returns. The broker runs in its own mount namespace with its data directory on a 64 MiB
tmpfs (`unshare -m` + `mount -t tmpfs`, so the mount dies with the broker and nothing is
left mounted); the test fills and empties that filesystem through /proc/PID/root. Needs
root (CAP_SYS_ADMIN); where mounting is not permitted the test says so and checks nothing,
and the alarm logic is covered by the unit test resources::tests (free space injected)."""
import os
import stat
import subprocess
import time

import pika

from durlib import Broker, check, drain, time_limit

LIMIT = '40MB'          # --disk-free-limit; the tmpfs has 64 MiB (67 MB)
FILL_BYTES = 40 * 1024 * 1024


def can_mount(tmp):
    probe = os.path.join(tmp, 'mount-probe')
    os.makedirs(probe, exist_ok=True)
    r = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c',
                        'mount -t tmpfs -o size=1m tmpfs "$0"', probe],
                       capture_output=True, text=True, timeout=10)
    return r.returncode == 0, (r.stderr or '').strip()


def wrapper(t, data_dir):
    """A stand-in for the coney binary: a new mount namespace, a tmpfs on the data dir, then
    exec coney (same pid) with the given arguments and the disk free limit."""
    path = os.path.join(t.tmp, 'coney-on-tmpfs.sh')
    with open(path, 'w') as f:
        f.write('#!/bin/sh\nexec unshare -m --propagation private sh -c \'mount -t tmpfs -o size=64m '
                'tmpfs "$0" || exit 99; exec "$@" --disk-free-limit %s\' "%s" "%s" "$@"\n'
                % (LIMIT, data_dir, t.binary))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def wait_for(conn, pred, what, secs=10):
    deadline = time.monotonic() + secs
    while not pred():
        check(time.monotonic() < deadline, 'no %s within %ss' % (what, secs))
        conn.process_data_events(time_limit=0.1)


@time_limit(60)
def test_disk_alarm_clears_when_space_returns(t):
    """coney with --disk-free-limit 40MB on a 64 MiB tmpfs: a publisher (pika) publishes a
    persistent message with a confirm; a 40 MiB file then fills the filesystem below the
    limit, so within a few seconds the publisher gets connection.blocked 'low on disk', and a
    message it publishes then is not taken (another connection sees one message in the
    queue); the file is deleted, space returns, the publisher gets connection.unblocked and
    the held-back message reaches the queue, after the first. The broker's log shows the
    alarm set once and cleared."""
    ok, why = can_mount(t.tmp)
    if not ok:
        t.report('SKIPPED: cannot mount a tmpfs here (%s); the alarm logic is covered by '
                 'the unit test resources::tests::the_disk_alarm_clears_when_space_returns' % why)
        return
    data = os.path.join(t.tmp, 'tmpfs-data')
    b = Broker(wrapper(t, data), data, os.path.join(t.tmp, 'coney.log'))
    t.brokers.append(b)
    b.start()
    fs = '/proc/%d/root%s' % (b.proc.pid, data)
    st = os.statvfs(fs)
    check(st.f_blocks * st.f_frsize <= 64 * 1024 * 1024, 'the data dir is not on the 64 MiB tmpfs')
    events = []
    conn = b.connect()
    conn.add_on_connection_blocked_callback(lambda c, m: events.append('blocked: ' + m.method.reason))
    conn.add_on_connection_unblocked_callback(lambda c, m: events.append('unblocked'))
    ch = conn.channel()
    ch.queue_declare('alarmed', durable=True)
    ch.confirm_delivery()
    ch.basic_publish('', 'alarmed', b'before', pika.BasicProperties(delivery_mode=2))
    plain = conn.channel()
    with open(os.path.join(fs, 'filler'), 'wb') as f:
        f.write(b'\0' * FILL_BYTES)
    free_low = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    wait_for(conn, lambda: events, 'connection.blocked after the filesystem filled')
    check(events == ['blocked: low on disk'], 'events: %r' % events)
    # A publish now stays in the socket: the broker does not read a blocked publisher.
    plain.basic_publish('', 'alarmed', b'during', pika.BasicProperties(delivery_mode=2))
    conn.process_data_events(time_limit=1.5)
    other = b.connect()
    count = lambda: other.channel().queue_declare('alarmed', passive=True).method.message_count  # noqa: E731
    during = count()
    os.remove(os.path.join(fs, 'filler'))
    wait_for(conn, lambda: 'unblocked' in events, 'connection.unblocked after the space returned')
    wait_for(conn, lambda: count() == 2, 'the held-back message in the queue')
    other.close()
    conn.close()
    got = drain(b, 'alarmed', expect=2)
    log = b.log_text()
    t.report('free while full: %.1f MB (limit 40 MB); events %r; messages in the queue while '
             'blocked: %d; log: alarm set %d, cleared %d'
             % (free_low / 1e6, events, during, log.count('disk alarm set'),
                log.count('disk alarm cleared')))
    check(during == 1, 'while blocked the queue held %d messages, expected 1' % during)
    check([g.body for g in got] == [b'before', b'during'], 'queue holds %r' % [g.body for g in got])
    check(log.count('disk alarm set') == 1 and 'disk alarm cleared' in log,
          'the log does not show the alarm set once and cleared')
    b.term()
