"""Runs one test (a durability test, a scenario check) as a child process in a session of its
own, bounded in time, and afterwards kills that whole session: the child and every broker or
client program it started. Reads the reason from the child's `FAILED: ` line and prints the result line. Used by
tests/durability/run.py and tests/scenarios/run.py.
"""
import os
import signal
import subprocess
import sys

# The child being run, for kill_running() from a signal handler.
RUNNING = []
# Longest reason kept from a FAILED: line and the lines continuing it.
REASON_MAX = 500


def kill_session(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_running():
    """Kill the running child with everything it started (for a signal handler)."""
    for proc in RUNNING:
        kill_session(proc)


def run_in_session(argv, timeout, env=None, stderr=subprocess.PIPE):
    """Run `argv` to its end or for `timeout` seconds. Returns (exit status, or None when the
    time limit stopped it; stdout; stderr), the outputs as bytes (empty when not captured)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=stderr, env=env, start_new_session=True)
    RUNNING[:] = [proc]
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
        kill_session(proc)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = b'', b''
    # whatever the outcome, leave nothing it started behind
    kill_session(proc)
    RUNNING[:] = []
    return rc, out or b'', err or b''


def failure_reason(lines):
    """The message of the first `FAILED: ` line with the lines continuing it (not the
    transcripts below it), on one line; None if there is no such line."""
    for i, line in enumerate(lines):
        if line.startswith('FAILED: '):
            parts = [line[len('FAILED: '):].strip()]
            for more in lines[i + 1:]:
                if more.lstrip().startswith(('--- ', '| ')) or not more.strip():
                    break
                parts.append(more.strip())
            reason = ' '.join(p for p in parts if p)
            if len(reason) > REASON_MAX:
                reason = reason[:REASON_MAX - 3] + '...'
            return reason
    return None


def report(label, ok, reason, detail):
    """The runners' result line: `PASS label`, or `FAIL label: reason` with the `detail`
    lines (the end of the child's output) indented on stderr."""
    if ok:
        print('PASS %s' % label, flush=True)
        return
    print('FAIL %s: %s' % (label, reason or '?'), flush=True)
    sys.stderr.write(''.join('    %s\n' % l for l in detail))
    sys.stderr.flush()
