#!/usr/bin/env python3
"""Durability tests: coney restarted cleanly (SIGTERM) and crashed (SIGKILL).

    python3 tests/durability/run.py [--coney PATH] [--only NAME]... [--list]
        [--rounds N] [--seed N] [--keep] [-v]

Each test is a function (test_*.py in this directory) with a docstring that
says what it proves. Every test starts its own coney (own port, own data
directory under a scratch directory) and drives it with pika 1.x clients.
Each runs in a child process in its own session, killed with everything it
started (brokers, client programs) once its time limit is over.

Prints `PASS name` or `FAIL name: reason` per test (indented report lines
follow, e.g. the crash-test figures per round; failure details go to
stderr), then a final line `N passed, M failed`. Exit status is non-zero if
any test failed.

Needs pika 1.x: run it with .venv/pika1/bin/python, or with any python3, in
which case it re-executes itself under .venv/pika1 (scripts/pyenv.sh makes
it; PIKA1_PYTHON overrides).

Options / environment:
    --include-skipped  also run the tests listed in NOT_YET_ON_CONEY (features coney
                     does not have yet; skipped by default, each with its reason)
    --coney PATH     the broker binary (default $CONEY_BIN, else
                     ${CARGO_TARGET_DIR:-target}/release/coney)
    --rounds N       crash-test rounds (default $CRASH_ROUNDS or 5)
    --seed N         random seed of the crash test (default: time; printed)
    --keep           keep the scratch directory (broker logs, data dirs)
"""
import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lib'))
import brokerlib  # noqa: E402  (the pika 1.x interpreter)
import runner  # noqa: E402  (a test in its own session, killed with all it started)
MODULES = ['test_restart', 'test_redelivered', 'test_tutorial', 'test_settlements',
           'test_damage', 'test_crash', 'test_segments', 'test_ext', 'test_definitions',
           'test_compaction', 'test_disk_alarm', 'test_flow']
DEFAULT_LIMIT = 60

# Tests of features coney does not have yet, with the reason: run.py skips them (SKIP lines,
# counted apart) unless --include-skipped. Remove an entry once coney passes the test.
NOT_YET_ON_CONEY = {
}


def ensure_pika():
    """Re-exec under the pika 1.x venv if this interpreter has no pika 1.x."""
    try:
        import pika
        if not pika.__version__.startswith('0.'):
            return
    except ImportError:
        pass
    py = brokerlib.venv_python('pika1')
    if os.environ.get('DURABILITY_REEXEC') or not os.access(py, os.X_OK):
        sys.stderr.write('run.py: needs pika 1.x; no usable %s (run scripts/pyenv.sh)\n' % py)
        sys.exit(2)
    os.environ['DURABILITY_REEXEC'] = '1'
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def collect():
    """[(name, function)] in file order: test_foo -> 'foo'."""
    sys.path.insert(0, HERE)
    tests = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        fns = [v for k, v in vars(mod).items()
               if k.startswith('test_') and callable(v) and getattr(v, '__module__', '') == modname]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        tests += [(f.__name__[len('test_'):], f) for f in fns]
    return tests


def default_binary():
    if os.environ.get('CONEY_BIN'):
        return os.environ['CONEY_BIN']
    target = os.environ.get('CARGO_TARGET_DIR') or os.path.join(REPO, 'target')
    return os.path.join(target, 'release', 'coney')


# ---------------------------------------------------------------- child

def run_child(args):
    """Run one test in this process; print OK or FAILED: reason."""
    import durlib
    tests = dict(collect())
    fn = tests[args.child]
    tmp = os.path.join(args.tmp, args.child)
    os.makedirs(tmp, exist_ok=True)
    ctx = durlib.Ctx(args.child, args.coney, tmp, args.seed, args.rounds, args.verbose)
    status = 0
    try:
        fn(ctx)
    except Exception as e:  # noqa: BLE001  (a bug in a test fails it loudly too)
        e = durlib.as_failure(e)
        if isinstance(e, durlib.TestFailure):
            print('FAILED: %s' % e, flush=True)
        else:
            traceback.print_exc(file=sys.stdout)
            print('FAILED: unexpected %s: %s' % (type(e).__name__, e), flush=True)
        for b in ctx.brokers:
            print(b.log_tail(40), flush=True)
        status = 1
    finally:
        ctx.close()
    if status == 0:
        print('OK', flush=True)
    return status


# ---------------------------------------------------------------- parent

SCRATCH = []   # the scratch directory, removed on an interrupt unless --keep


def on_signal(signum, frame):
    runner.kill_running()
    for d in SCRATCH:
        shutil.rmtree(d, ignore_errors=True)
    sys.stderr.write('run.py: interrupted by signal %d\n' % signum)
    os._exit(128 + signum)


def run_one(name, limit, args):
    argv = [sys.executable, os.path.abspath(__file__), '--child', name, '--tmp', args.tmp,
            '--coney', args.coney, '--seed', str(args.seed), '--rounds', str(args.rounds)]
    if args.verbose:
        argv.append('-v')
    start = time.monotonic()
    rc, out, err = runner.run_in_session(argv, limit,
                                         stderr=None if args.verbose else subprocess.PIPE)
    elapsed = time.monotonic() - start
    text = out.decode('utf-8', 'replace')
    errtext = err.decode('utf-8', 'replace')
    lines = text.splitlines()
    reports = [l[len('REPORT '):] for l in lines if l.startswith('REPORT ')]
    if rc is None:
        return False, 'timed out after %ss' % limit, reports, text + errtext, elapsed
    if rc == 0 and lines and lines[-1] == 'OK':
        return True, '', reports, text + errtext, elapsed
    reason = runner.failure_reason(lines) or 'exit status %s' % rc
    return False, reason, reports, text + errtext, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--coney', default=default_binary(), help='broker binary')
    ap.add_argument('--only', action='append', metavar='NAME',
                    help='run only tests whose name contains NAME (repeatable)')
    ap.add_argument('--list', action='store_true', help='list the tests with their docstrings')
    ap.add_argument('--rounds', type=int, default=int(os.environ.get('CRASH_ROUNDS', '5')))
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--keep', action='store_true', help='keep the scratch directory')
    ap.add_argument('--include-skipped', action='store_true',
                    help='also run the tests listed in NOT_YET_ON_CONEY')
    ap.add_argument('--timeout-scale', type=float, default=1.0,
                    help='multiply every time limit (slow machines)')
    ap.add_argument('-v', '--verbose', action='store_true')
    ap.add_argument('--child', help=argparse.SUPPRESS)
    ap.add_argument('--tmp', help=argparse.SUPPRESS)
    args = ap.parse_args()
    ensure_pika()

    if args.child:
        return run_child(args)

    tests = collect()
    selected = [(n, f) for n, f in tests if not args.only or any(o in n for o in args.only)]
    if args.list:
        for n, f in selected:
            doc = ' '.join((f.__doc__ or '').split())
            if n in NOT_YET_ON_CONEY:
                doc = '[skipped: %s] %s' % (NOT_YET_ON_CONEY[n], doc)
            print('%-40s %3ss  %s' % (n, getattr(f, 'time_limit', DEFAULT_LIMIT), doc))
        return 0
    if not os.access(args.coney, os.X_OK):
        print('FAIL setup: no broker binary at %s (cargo build --release, or --coney)' % args.coney)
        print('0 passed, 1 failed')
        return 1
    if args.seed is None:
        args.seed = int(time.time() * 1000) % 1000000
    args.coney = os.path.abspath(args.coney)
    args.tmp = tempfile.mkdtemp(prefix='coney-durability.')
    if not args.keep:
        SCRATCH.append(args.tmp)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    sys.stderr.write('durability: %d tests, coney %s, seed %d, rounds %d, scratch %s\n'
                     % (len(selected), args.coney, args.seed, args.rounds, args.tmp))
    passed = failed = skipped = 0
    t0 = time.monotonic()
    try:
        for name, fn in selected:
            if name in NOT_YET_ON_CONEY and not args.include_skipped:
                skipped += 1
                print('SKIP %s: %s' % (name, NOT_YET_ON_CONEY[name]), flush=True)
                continue
            limit = getattr(fn, 'time_limit', DEFAULT_LIMIT) * args.timeout_scale
            ok, reason, reports, text, elapsed = run_one(name, limit, args)
            passed += ok
            failed += not ok
            detail = [l for l in text.rstrip('\n').splitlines() if not l.startswith('REPORT ')]
            runner.report(name, ok, reason, detail[-80:])
            for r in reports:
                print('    %s' % r, flush=True)
            sys.stderr.write('    (%s took %.1fs)\n' % (name, elapsed))
            sys.stderr.flush()
    finally:
        if args.keep or failed:
            sys.stderr.write('durability: scratch directory kept: %s\n' % args.tmp)
        else:
            shutil.rmtree(args.tmp, ignore_errors=True)
    sys.stderr.write('durability tests took %.1fs (seed %d)\n' % (time.monotonic() - t0, args.seed))
    if skipped:
        print('%d skipped (NOT_YET_ON_CONEY; --include-skipped runs them)' % skipped, flush=True)
    print('%d passed, %d failed' % (passed, failed), flush=True)
    return 1 if failed or not selected else 0


if __name__ == '__main__':
    sys.exit(main())
