#!/usr/bin/env python3
"""Run a command and fail when a process it started outlives it.

    no-leftovers.py COMMAND [ARG...]

This process becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so every process the
command starts and then leaves behind (a test's private dbus-daemon whose parent is gone, a
server a test forgot to stop, a daemonized grandchild) is reparented here instead of to init.
When the command has exited, whatever is still below this process is listed with its pid,
working directory and command line, stopped (SIGTERM, then SIGKILL after 5 s) and reaped, and
the exit status is 1. Otherwise the command's own exit status is returned.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children_of(pid):
    """Every live process whose parent is pid, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields after it are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == pid and state != "Z":
            found.append(int(entry))
    return found


def descendants(pid):
    out = []
    todo = children_of(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children_of(p))
    return out


def describe(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        argv = "?"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = "?"
    return f"pid {pid} in {cwd}: {argv or '(no command line)'}"


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: no-leftovers.py COMMAND [ARG...]")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"no-leftovers: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    # Interrupted by the user: pass it on to the command and still check what it left.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    command = subprocess.Popen(sys.argv[1:], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Wait for any child: orphans that end while the command runs are reaped as they go.
    while True:
        pid, raw = os.wait()
        if pid == command.pid:
            status = os.waitstatus_to_exitcode(raw)
            status = 128 - status if status < 0 else status
            break
    reap()
    left = descendants(os.getpid())
    if not left:
        return status
    print(f"no-leftovers: {len(left)} process(es) started by `{' '.join(sys.argv[1:])}` outlived it:", file=sys.stderr)
    for pid in left:
        print(f"  {describe(pid)}", file=sys.stderr)
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while descendants(os.getpid()) and time.monotonic() < deadline:
            reap()
            time.sleep(0.05)
        reap()
    return 1


if __name__ == "__main__":
    sys.exit(main())
