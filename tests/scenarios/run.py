#!/usr/bin/env python3
"""Run every tutorial scenario, for both pika flavours, against one broker.

    AMQP_HOST=127.0.0.1 AMQP_PORT=5672 python3 tests/scenarios/run.py
        [--flavour pika1|pika013]... [--only NAME]... [--timeout SECONDS]
        [--list] [-v]

Prints `PASS flavour/name` or `FAIL flavour/name: reason` per scenario
(details of failures go to stderr), then a final line `N passed, M failed`.
Exit status is non-zero if any scenario failed.

Needs only the standard library; the tutorial programs themselves run under
.venv/pika1 and .venv/pika013 (scripts/pyenv.sh creates them; PIKA1_PYTHON /
PIKA013_PYTHON override).
"""
import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLAVOURS = ['pika1', 'pika013']
SCENARIOS = ['hello_world', 'work_queue', 'durable', 'fair_dispatch',
             'fanout', 'direct', 'topic', 'rpc']


CURRENT = []   # the running check's Popen, for the signal handler


def on_signal(signum, frame):
    """Kill the running check with everything it started, then exit."""
    for proc in CURRENT:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    sys.stderr.write('run.py: interrupted by signal %d\n' % signum)
    os._exit(128 + signum)


def run_one(flavour, name, timeout, verbose):
    argv = [sys.executable, os.path.join(HERE, 'checks', name + '.py'), flavour]
    env = dict(os.environ)
    if verbose:
        env['SCENARIO_VERBOSE'] = '1'
    start = time.monotonic()
    # own session, so that on a time-out the check and every program it
    # started can be killed together
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    CURRENT[:] = [proc]
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out = b''
    # whatever the outcome, leave no stray process of this scenario behind
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    CURRENT[:] = []
    elapsed = time.monotonic() - start
    text = out.decode('utf-8', 'replace')
    if timed_out:
        return False, 'timed out after %ss' % timeout, text, elapsed
    if proc.returncode == 0:
        return True, '', text, elapsed
    reason = 'exit status %s' % proc.returncode
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith('FAILED: '):
            # the failure message, without the programs' transcripts, on one line
            parts = [line[len('FAILED: '):].strip()]
            for more in lines[i + 1:]:
                if more.lstrip().startswith(('--- ', '| ')) or not more.strip():
                    break
                parts.append(more.strip())
            reason = ' '.join(p for p in parts if p)
            if len(reason) > 500:
                reason = reason[:497] + '...'
            break
    return False, reason, text, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--flavour', action='append', choices=FLAVOURS,
                    help='run only this flavour (repeatable; default: both)')
    ap.add_argument('--only', action='append', metavar='NAME',
                    help='run only scenarios whose name contains NAME (repeatable)')
    ap.add_argument('--timeout', type=float, default=60, help='per-scenario time limit (s)')
    ap.add_argument('--list', action='store_true', help='list the scenarios and exit')
    ap.add_argument('-v', '--verbose', action='store_true',
                    help="echo the programs' output (stderr)")
    args = ap.parse_args()

    flavours = args.flavour or FLAVOURS
    selected = [(f, s) for f in flavours for s in SCENARIOS
                if not args.only or any(o in s or o == '%s/%s' % (f, s) for o in args.only)]
    if args.list:
        for f, s in selected:
            print('%s/%s' % (f, s))
        return 0

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    host = os.environ.get('AMQP_HOST', '127.0.0.1')
    port = os.environ.get('AMQP_PORT', '5672')
    sys.stderr.write('scenarios: %d against %s:%s\n' % (len(selected), host, port))
    passed = failed = 0
    t0 = time.monotonic()
    for flavour, name in selected:
        ok, reason, text, elapsed = run_one(flavour, name, args.timeout, args.verbose)
        label = '%s/%s' % (flavour, name)
        if ok:
            passed += 1
            print('PASS %s' % label, flush=True)
        else:
            failed += 1
            print('FAIL %s: %s' % (label, reason or '?'), flush=True)
            sys.stderr.write(''.join('    %s\n' % l for l in text.rstrip('\n').splitlines()[-60:]))
            sys.stderr.flush()
        if args.verbose:
            sys.stderr.write('    (%s took %.1fs)\n' % (label, elapsed))
    sys.stderr.write('scenarios took %.1fs\n' % (time.monotonic() - t0))
    print('%d passed, %d failed' % (passed, failed), flush=True)
    return 1 if failed or not selected else 0


if __name__ == '__main__':
    sys.exit(main())
