#!/usr/bin/env python3
"""aither-init against s6 (s6-svscan) and supervisord, one run, the same workload.

N units (default 1000), each `stamp FILE` which writes its PID and start time and then execs
`sleep infinity`. For each supervisor:
  - time until all N are running (from launching the supervisor to the last start stamp);
  - memory: RSS of all supervisor processes together (s6: s6-svscan and every s6-supervise);
  - CPU time and wakeups (context switches of every supervisor thread) over 10 idle seconds;
  - restart latency: SIGKILL one unit's process, time until its new start stamp (50 samples).
Ratios are aither-init's figure over the peer's. Needs s6 and supervisor (Debian packages),
gcc, and `cargo build --release -p aither-init --example supervise`.
"""
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
N = int(os.environ.get("AITHER_BENCH_UNITS", "1000"))
SAMPLES = 50
IDLE_S = 10


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                kids.setdefault(int(rest[1]), []).append(int(d))
            except (OSError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def supervisor_pids(root_pid):
    """The supervisor's own processes: the tree minus the workload."""
    return [p for p in descendants(root_pid) if comm(p) not in ("sleep", "stamp", "sh")]


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_and_switches(pids):
    ticks = switches = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                ticks += int(rest[11]) + int(rest[12])
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            switches += int(line.split()[1])
            except (OSError, IndexError):
                pass
    return ticks * 1000 // os.sysconf("SC_CLK_TCK"), switches


def read_stamp(path):
    try:
        with open(path) as f:
            pid, ns = f.read().split()
            return int(pid), int(ns)
    except (OSError, ValueError):
        return None


def measure(name, start, stamps):
    t0 = time.time_ns()
    proc = start()
    deadline = time.time() + 300
    while True:
        done = [f for f in os.listdir(stamps) if not f.endswith(".tmp")]
        if len(done) >= N:
            break
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{name}: only {len(done)} of {N} units started")
        time.sleep(0.01)
    last = max(read_stamp(os.path.join(stamps, f))[1] for f in os.listdir(stamps) if not f.endswith(".tmp"))
    all_running = (last - t0) / 1e9
    time.sleep(2)  # every unit has been up for over a second (s6 delays faster restarts)
    pids = supervisor_pids(proc.pid)
    rss = rss_kb(pids)
    c0, w0 = cpu_and_switches(pids)
    time.sleep(IDLE_S)
    c1, w1 = cpu_and_switches(pids)
    lat = []
    for k in random.Random(1).sample(range(N), SAMPLES):
        path = os.path.join(stamps, f"u{k}")
        old = read_stamp(path)
        t_kill = time.time_ns()
        os.kill(old[0], signal.SIGKILL)
        until = time.time() + 10
        while time.time() < until:
            new = read_stamp(path)
            if new and new[0] != old[0]:
                lat.append((new[1] - t_kill) / 1e6)
                break
            time.sleep(0.0002)
        else:
            lat.append(float("inf"))
        time.sleep(0.05)
    workload = [read_stamp(os.path.join(stamps, f)) for f in os.listdir(stamps) if not f.endswith(".tmp")]
    for p in [proc.pid] + [w[0] for w in workload if w]:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    for p in descendants(proc.pid):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()
    lat.sort()
    return {
        "all running (s)": all_running,
        "RSS, all supervisor processes (MB)": rss / 1024,
        "supervisor processes": len(pids),
        f"idle CPU over {IDLE_S} s (ms)": c1 - c0,
        f"idle wakeups over {IDLE_S} s": w1 - w0,
        "restart p50 (ms)": statistics.median(lat),
        "restart p99 (ms)": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def main():
    work = tempfile.mkdtemp(prefix="aither-bench-")
    stamp = os.path.join(work, "stamp")
    subprocess.run(["gcc", "-O2", "-o", stamp, os.path.join(ROOT, "init", "benches", "stamp.c")], check=True)
    supervise = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "examples", "supervise")
    if not os.path.exists(supervise):
        sys.exit("build first: cargo build --release -p aither-init --example supervise")
    devnull = subprocess.DEVNULL
    results = {}

    def dirs(name):
        d = os.path.join(work, name)
        os.makedirs(os.path.join(d, "stamps"))
        return d, os.path.join(d, "stamps")

    d, st = dirs("aither")
    results["aither-init"] = measure("aither-init", lambda: subprocess.Popen(
        [supervise, str(N), d, "--", stamp, os.path.join(st, "u{i}")], stdout=devnull, stderr=devnull), st)

    d, st = dirs("s6")
    scan = os.path.join(d, "scan")
    for i in range(N):
        sd = os.path.join(scan, f"u{i}")
        os.makedirs(sd)
        with open(os.path.join(sd, "run"), "w") as f:
            f.write(f"#!/bin/sh\nexec {stamp} {st}/u{i}\n")
        os.chmod(os.path.join(sd, "run"), 0o755)
    results["s6"] = measure("s6", lambda: subprocess.Popen(["s6-svscan", "-c", str(N * 2), scan], stdout=devnull, stderr=devnull), st)

    d, st = dirs("supervisord")
    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\nminfds=8192\n")
        for i in range(N):
            f.write(f"[program:u{i}]\ncommand={stamp} {st}/u{i}\nautorestart=true\nstartsecs=0\n"
                    "stdout_logfile=NONE\nstderr_logfile=NONE\n")
    results["supervisord"] = measure("supervisord", lambda: subprocess.Popen(
        ["supervisord", "-c", conf], stdout=devnull, stderr=devnull), st)

    s6v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "s6"], capture_output=True, text=True).stdout
    sdv = subprocess.run(["supervisord", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{N} units of `sleep infinity`; s6 {s6v}, supervisord {sdv}; {os.cpu_count()} CPUs")
    names = list(results)
    print(f"{'':38}" + "".join(f"{n:>14}" for n in names) + "".join(f"{'aither/' + n:>20}" for n in names[1:]))
    for metric in results["aither-init"]:
        row = f"{metric:38}" + "".join(f"{results[n][metric]:>14.2f}" for n in names)
        for peer in names[1:]:
            a, p = results["aither-init"][metric], results[peer][metric]
            row += f"{(a / p if p else float('nan')):>20.3f}"
        print(row)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
