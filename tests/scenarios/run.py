#!/usr/bin/env python3
"""Run every tutorial scenario, for both pika flavours, against one broker.

    AMQP_HOST=127.0.0.1 AMQP_PORT=5672 python3 tests/scenarios/run.py
        [--flavour pika1|pika013]... [--only NAME]... [--timeout SECONDS]
        [--list] [--include-skipped] [-v]

Prints `PASS flavour/name` or `FAIL flavour/name: reason` per scenario
(details of failures go to stderr), then a final line `N passed, M failed`.
Exit status is non-zero if any scenario failed. Scenarios listed in NOT_YET_ON_CONEY
(features coney does not have yet) are skipped with their reason unless the broker says it
is RabbitMQ or --include-skipped is given.

Needs only the standard library; the tutorial programs themselves run under
.venv/pika1 and .venv/pika013 (scripts/pyenv.sh creates them; PIKA1_PYTHON /
PIKA013_PYTHON override).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'lib'))
import runner  # noqa: E402  (a check in its own session, killed with all it started)

FLAVOURS = ['pika1', 'pika013']
SCENARIOS = ['hello_world', 'work_queue', 'durable', 'fair_dispatch',
             'fanout', 'direct', 'topic', 'rpc',
             'retry_ttl_dlx', 'priority_queue', 'rpc_reply_to']
# Scenarios written for some flavours only (the others run for every flavour).
ONLY_FLAVOURS = {
    'retry_ttl_dlx': ['pika1'],
    'priority_queue': ['pika1'],
    'rpc_reply_to': ['pika1'],
}
# Scenarios of features coney does not have yet, with the reason: against a broker that is
# not RabbitMQ they are skipped (SKIP lines, counted apart) unless --include-skipped. Remove
# an entry once coney passes the scenario.
NOT_YET_ON_CONEY = {}


def on_signal(signum, frame):
    """Kill the running check with everything it started, then exit."""
    runner.kill_running()
    sys.stderr.write('run.py: interrupted by signal %d\n' % signum)
    os._exit(128 + signum)


def broker_product():
    """The broker's product name from connection.start ('' if it cannot be asked)."""
    from brokerlib import venv_python
    argv = [venv_python('pika1'), os.path.join(HERE, 'admin.py'), 'product']
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
        return json.loads(cp.stdout.decode().strip().splitlines()[-1])['product']
    except (OSError, ValueError, KeyError, IndexError, subprocess.TimeoutExpired):
        return ''


def run_one(flavour, name, timeout, verbose):
    argv = [sys.executable, os.path.join(HERE, 'checks', name + '.py'), flavour]
    env = dict(os.environ)
    if verbose:
        env['SCENARIO_VERBOSE'] = '1'
    start = time.monotonic()
    # stderr into stdout: the transcript of a failure keeps its order
    rc, out, _ = runner.run_in_session(argv, timeout, env, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - start
    text = out.decode('utf-8', 'replace')
    if rc is None:
        return False, 'timed out after %ss' % timeout, text, elapsed
    if rc == 0:
        return True, '', text, elapsed
    reason = runner.failure_reason(text.splitlines()) or 'exit status %s' % rc
    return False, reason, text, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--flavour', action='append', choices=FLAVOURS,
                    help='run only this flavour (repeatable; default: both)')
    ap.add_argument('--only', action='append', metavar='NAME',
                    help='run only scenarios whose name contains NAME (repeatable)')
    ap.add_argument('--timeout', type=float, default=60, help='per-scenario time limit (s)')
    ap.add_argument('--list', action='store_true', help='list the scenarios and exit')
    ap.add_argument('--include-skipped', action='store_true',
                    help='also run NOT_YET_ON_CONEY scenarios against a broker other than RabbitMQ')
    ap.add_argument('-v', '--verbose', action='store_true',
                    help="echo the programs' output (stderr)")
    args = ap.parse_args()

    flavours = args.flavour or FLAVOURS
    selected = [(f, s) for f in flavours for s in SCENARIOS
                if f in ONLY_FLAVOURS.get(s, FLAVOURS)
                and (not args.only or any(o in s or o == '%s/%s' % (f, s) for o in args.only))]
    if args.list:
        for f, s in selected:
            note = ' (skipped unless RabbitMQ: %s)' % NOT_YET_ON_CONEY[s] if s in NOT_YET_ON_CONEY else ''
            print('%s/%s%s' % (f, s, note))
        return 0

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    host = os.environ.get('AMQP_HOST', '127.0.0.1')
    port = os.environ.get('AMQP_PORT', '5672')
    skip_known = False
    if not args.include_skipped and any(s in NOT_YET_ON_CONEY for _, s in selected):
        product = broker_product()
        skip_known = product != 'RabbitMQ'
        sys.stderr.write('scenarios: the broker is %r: %s\n' % (
            product, 'NOT_YET_ON_CONEY scenarios skipped' if skip_known else 'running all'))
    sys.stderr.write('scenarios: %d against %s:%s\n' % (len(selected), host, port))
    passed = failed = skipped = 0
    t0 = time.monotonic()
    for flavour, name in selected:
        if skip_known and name in NOT_YET_ON_CONEY:
            skipped += 1
            print('SKIP %s/%s: %s' % (flavour, name, NOT_YET_ON_CONEY[name]), flush=True)
            continue
        ok, reason, text, elapsed = run_one(flavour, name, args.timeout, args.verbose)
        label = '%s/%s' % (flavour, name)
        passed += ok
        failed += not ok
        runner.report(label, ok, reason, text.rstrip('\n').splitlines()[-60:])
        if args.verbose:
            sys.stderr.write('    (%s took %.1fs)\n' % (label, elapsed))
    sys.stderr.write('scenarios took %.1fs\n' % (time.monotonic() - t0))
    if skipped:
        print('%d skipped (NOT_YET_ON_CONEY; --include-skipped runs them)' % skipped, flush=True)
    print('%d passed, %d failed' % (passed, failed), flush=True)
    return 1 if failed or not selected else 0


if __name__ == '__main__':
    sys.exit(main())
