#!/usr/bin/env python3
"""Fault and abuse figures for the appliance's front doors (`make chaos`).

Runs agentd in development mode on this machine (a private D-Bus, a configuration root in a
temporary directory, two agents, the tiny test chat model as the plan's pinned chat model,
a real aither-infer worker) and does to it what an attacker or bad luck would:

  flood     10,000 half-sent requests and 200 slow bodies at the gateway while an agent is
            killed and must come back each time, and legitimate clients keep asking;
  agentd    kill -9 of agentd under streaming load: the agents and the worker survive and
            are adopted by the next agentd; no request hangs;
  worker    the worker killed mid-stream: the client gets an error, the worker restarts,
            the next request is served;
  disk      a full disk during `aitherctl models pull` (a small tmpfs): a clear error, the
            .part kept, the next pull resumes (needs root to mount; reported as not run
            otherwise);
  state     a corrupt state file when agentd starts: a clear message, the running units
            found again, none started twice;
  hostile   a workflow step whose command forges its result, daemonizes (setsid, a double
            fork), fills its workspace and floods its output: agentd keeps answering (its
            Status p50 and p99 through aitherctl while it runs), the step ends within its
            budget, nothing it started is left running, no proposal is queued, the other
            units are untouched.

Prints one line per figure and writes target/chaos/report.json. Exit status 1 when an
invariant broke (an agent not restarted, a request that hung, a unit lost or doubled).

    python3 tests/chaos/chaos.py [--only NAME ...]
"""
import argparse
import contextlib
import hashlib
import http.server
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
BIN = os.path.join(TARGET, "debug")
PY = os.path.join(os.environ.get("AITHER_VENV", os.path.join(REPO, ".venv")), "bin", "python")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, pred, secs=60, step=0.05):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 - polled state may not exist yet
            pass
        time.sleep(step)
    raise SystemExit(f"chaos: {what}: not within {secs} s")


class Appliance:
    """agentd --dev in a temporary root, with its bus, key, agents and model."""

    def __init__(self, tmp, models_tmpfs=False):
        self.tmp = tmp
        self.root = os.path.join(tmp, "root")
        self.xdg = os.path.join(tmp, "xdg")
        self.port = free_port()
        self.models = os.path.join(self.root, "var/lib/aither/models")
        os.makedirs(self.xdg, mode=0o700)
        os.makedirs(self.models)
        self.mounted = False
        if models_tmpfs:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", self.models], capture_output=True)
            self.mounted = r.returncode == 0
        bus = os.path.join(tmp, "bus")
        self.dbus = subprocess.Popen(["dbus-daemon", "--session", f"--address=unix:path={bus}", "--nofork",
                                      "--nopidfile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("dbus-daemon", lambda: os.path.exists(bus), 10)
        self.env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=f"unix:path={bus}", XDG_RUNTIME_DIR=self.xdg,
                        AGENTD_LOG="info")
        self.env.pop("NOTIFY_SOCKET", None)
        self.write("etc/aither/agentd.toml", f"""
[gateway]
listen = ["127.0.0.1:{self.port}", "unix:/run/aither/gateway.sock"]
max_connections = 256
header_timeout_seconds = 5
body_timeout_seconds = 5
idle_timeout_seconds = 5
start_timeout_seconds = 120
[agents]
max_concurrent = 4
[infer]
binary = "{os.path.join(BIN, 'aither-infer')}"
model_dir = "{self.models}"
[workflows]
runner = "{os.path.join(BIN, 'aither-agent')}"
workspace_max = "16M"
workspace_max_files = 2000
""")
        self.write("etc/aither/workflows.d/hostile.toml", HOSTILE)
        os.makedirs(os.path.dirname(HOSTILE_PATH), exist_ok=True)
        with open(HOSTILE_PATH, "w") as f:
            f.write(HOSTILE_SCRIPT)
        self.write("etc/aither/appliance.toml", 'preset = "minimal"\n')
        for a in ("chaos-a", "chaos-b"):
            self.write(f"etc/aither/agents.d/{a}.toml",
                       f'name = "{a}"\ncommand = ["/bin/sh", "-c", "exec sleep infinity"]\n')
        out = subprocess.run([PY, os.path.join(REPO, "tests/models/test_models.py"),
                              os.path.join(TARGET, "tmp/models")], check=True, capture_output=True, text=True)
        chat = os.path.join(out.stdout.strip(), "tiny-chat.gguf")
        os.symlink(chat, os.path.join(self.models, "Qwen2.5-14B-Instruct-Q4_K_M.gguf"))
        with open(os.path.join(REPO, "tests/fixtures/profiles/profile-1gpu.json")) as f:
            profile = json.load(f)
        profile["cpu"]["physical_cores"] = profile["cpu"]["logical_cores"] = 2
        self.profile = os.path.join(tmp, "profile.json")
        with open(self.profile, "w") as f:
            json.dump(profile, f)
        self.log = open(os.path.join(tmp, "agentd.log"), "a")
        self.agentd = None

    def write(self, rel, text):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)

    def start(self):
        self.agentd = subprocess.Popen([os.path.join(BIN, "agentd"), "--dev", "--root", self.root, "--profile",
                                        self.profile], env=self.env, stdout=self.log, stderr=self.log)
        wait("agentd answers", lambda: self.ctl("status").returncode == 0, 60)
        self.key = open(os.path.join(self.root, "etc/aither/gateway.key")).read().strip()

    def ctl(self, *args):
        return subprocess.run([os.path.join(BIN, "aitherctl"), "--session", *args], env=self.env,
                              capture_output=True, text=True)

    def unit(self, name):
        r = self.ctl("--json", "show", name)
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def running(self, name):
        u = self.unit(name)
        return u if u.get("state") == "running" and u.get("pid") else None

    def log_text(self):
        return open(os.path.join(self.tmp, "agentd.log")).read()

    def kill9(self):
        self.agentd.kill()
        self.agentd.wait()

    def close(self):
        if self.agentd and self.agentd.poll() is None:
            self.agentd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.agentd.wait(60)
        # Anything a killed agentd left running (its adopted units are stopped above).
        subprocess.run(["pkill", "-f", self.root], capture_output=True)
        self.dbus.terminate()
        if self.mounted:
            subprocess.run(["umount", "-l", self.models], capture_output=True)

    def request(self, method, path, body=None, key=True, timeout=60, host="localhost", unix=False):
        """One HTTP/1.1 exchange on a fresh connection (TCP, or the gateway's Unix socket as an
        agent would): (status, body text); status 0 when the connection failed, -1 when it
        hung past `timeout`."""
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if key:
            head += f"Authorization: Bearer {self.key}\r\n"
        try:
            if unix:
                conn = socket.socket(socket.AF_UNIX)
                conn.settimeout(timeout)
                conn.connect(os.path.join(self.xdg, "aither/gateway.sock"))
            else:
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
            with conn as s:
                s.sendall(head.encode() + b"\r\n" + data)
                chunks = []
                while True:
                    c = s.recv(65536)
                    if not c:
                        break
                    chunks.append(c)
        except socket.timeout:
            return -1, ""
        except OSError as e:
            return 0, f"{type(e).__name__}: {e}"
        raw = b"".join(chunks).decode(errors="replace")
        if not raw.startswith("HTTP/1.1 "):
            return 0, raw
        return int(raw.split(" ", 2)[1]), raw.split("\r\n\r\n", 1)[-1]

    def metrics(self):
        _, text = self.request("GET", "/metrics")
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out


def chat(max_tokens=16, stream=False):
    return {"messages": [{"role": "user", "content": "tell me about the appliance"}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}


def kill_agent_and_wait(app, name):
    """SIGKILL an agent; seconds until it runs again under a new PID, or None."""
    before = app.running(name)
    os.kill(before["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    try:
        wait(f"{name} restarted", lambda: (u := app.running(name)) and u["pid"] != before["pid"], 30)
    except SystemExit:
        return None
    return time.monotonic() - t0


def flood(app, report):
    """10,000 half-sent requests and 200 slow bodies, agents killed meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    wait("the chat worker", lambda: app.running("infer-qwen2.5-14b-instruct"), 120)
    stop = threading.Event()
    held, opened = [], [0]

    def half_open():
        for _ in range(10_000):
            if stop.is_set():
                break
            try:
                s = socket.create_connection(("127.0.0.1", app.port), timeout=5)
                s.setblocking(False)
                with contextlib.suppress(OSError):
                    s.send(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                held.append(s)
                opened[0] += 1
            except OSError:
                pass

    def slow_bodies():
        socks = []
        for _ in range(200):
            with contextlib.suppress(OSError):
                s = socket.create_connection(("127.0.0.1", app.port), timeout=5)
                s.send(f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {app.key}\r\n"
                       "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode())
                socks.append(s)
        while not stop.is_set():
            for s in socks:
                with contextlib.suppress(OSError):
                    s.send(b" ")
            time.sleep(1)
        for s in socks:
            s.close()

    legit = {"served": 0, "shed": 0, "failed": 0, "hung": 0}
    agents = {"served": 0, "shed": 0, "failed": 0, "hung": 0}
    why = {}

    def client(counts, unix):
        while not stop.is_set():
            status, body = app.request("POST", "/v1/chat/completions", chat(4), timeout=30, unix=unix)
            key = {200: "served", 503: "shed", -1: "hung"}.get(status, "failed")
            counts[key] += 1
            if key == "failed":
                reason = f"{status} {body[:80]}"
                why[reason] = why.get(reason, 0) + 1
            time.sleep(0.1)

    threads = [threading.Thread(target=f, daemon=True) for f in (half_open, slow_bodies)]
    threads += [threading.Thread(target=client, args=(legit, False), daemon=True),
                threading.Thread(target=client, args=(agents, True), daemon=True)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    restarts, lost = [], 0
    for _ in range(5):
        took = kill_agent_and_wait(app, "chaos-a")
        if took is None:
            lost += 1
        else:
            restarts.append(took)
    threads[0].join()
    time.sleep(6)  # past the header and body timeouts
    stop.set()
    for t in threads[1:]:
        t.join()
    m = app.metrics()
    for s in held:
        s.close()
    report["flood"] = {
        "half_open_sent": opened[0], "slow_bodies": 200, "seconds": round(time.monotonic() - t0, 1),
        "gateway_accepted": m.get("aither_gateway_http_connections_accepted_total"),
        "gateway_shed": m.get("aither_gateway_http_connections_shed_total"),
        "header_timeouts": m.get("aither_gateway_http_header_timeouts_total"),
        "body_timeouts": m.get("aither_gateway_http_body_timeouts_total"),
        "legit_served": legit["served"], "legit_shed": legit["shed"], "legit_failed": legit["failed"],
        "legit_hung": legit["hung"], "legit_failures": why, "socket_served": agents["served"],
        "socket_shed": agents["shed"], "socket_failed": agents["failed"] + agents["hung"], "agent_kills": 5, "agent_restarted": len(restarts), "agent_lost": lost,
        "restart_p50_ms": round(sorted(restarts)[len(restarts) // 2] * 1000) if restarts else None,
    }
    ok = (lost == 0 and legit["hung"] == 0 and legit["served"] > 0 and agents["shed"] + agents["failed"] == 0
          and agents["hung"] == 0 and "Too many open files" not in app.log_text())
    return ok


def streams_in_flight(app, n, seconds, results):
    """`n` clients streaming completions for `seconds`; counts outcomes."""
    stop = time.monotonic() + seconds

    def client():
        while time.monotonic() < stop:
            status, body = app.request("POST", "/v1/chat/completions", chat(32, stream=True), timeout=60)
            if status == -1:
                results["hung"] += 1
            elif status == 200 and "[DONE]" in body:
                results["completed"] += 1
            else:
                results["errors"] += 1
                time.sleep(0.2)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def agentd_killed(app, report):
    wait("the chat worker", lambda: app.running("infer-qwen2.5-14b-instruct"), 120)
    before = {u: app.running(u)["pid"] for u in ("chaos-a", "chaos-b", "infer-qwen2.5-14b-instruct")}
    results = {"completed": 0, "errors": 0, "hung": 0}
    threads = streams_in_flight(app, 4, 12, results)
    time.sleep(3)
    app.kill9()
    t0 = time.monotonic()
    app.start()
    back = time.monotonic() - t0
    after = {u: (app.unit(u) or {}).get("pid") for u in before}
    for t in threads:
        t.join()
    adopted = sum(1 for u in before if before[u] == after[u])
    status, _ = app.request("POST", "/v1/chat/completions", chat(4))
    report["agentd"] = {"streams": 4, "completed": results["completed"], "errors": results["errors"],
                        "hung": results["hung"], "units": len(before), "adopted": adopted,
                        "restarted": len(before) - adopted, "back_after_ms": round(back * 1000),
                        "served_after": status == 200}
    return results["hung"] == 0 and adopted == len(before) and status == 200


def worker_killed(app, report):
    w = wait("the chat worker", lambda: app.running("infer-qwen2.5-14b-instruct"), 120)
    outcome = {}

    def long_stream():
        outcome["status"], outcome["body"] = app.request("POST", "/v1/chat/completions", chat(3000, stream=True),
                                                         timeout=60)

    t = threading.Thread(target=long_stream)
    t.start()
    time.sleep(1.0)
    os.kill(w["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    t.join(60)
    client_saw = time.monotonic() - t0
    again = wait("the worker restarted",
                 lambda: (u := app.running("infer-qwen2.5-14b-instruct")) and u["pid"] != w["pid"] and u, 60)
    status, _ = app.request("POST", "/v1/chat/completions", chat(4))
    ended_badly = outcome.get("status") != 200 or "[DONE]" not in outcome.get("body", "")
    report["worker"] = {"client_error": ended_badly, "client_saw_it_after_ms": round(client_saw * 1000),
                        "restarts": again.get("restarts"), "next_request": status}
    return ended_badly and status == 200 and outcome.get("status") != -1


class RangeHandler(http.server.BaseHTTPRequestHandler):
    data = b""
    ranges = []

    def do_GET(self):  # noqa: N802 - the standard library's name
        start = 0
        r = self.headers.get("Range")
        if r and r.startswith("bytes="):
            start = int(r[6:].split("-")[0])
            RangeHandler.ranges.append(start)
        body = self.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def full_disk(report, tmp):
    app = Appliance(os.path.join(tmp, "disk"), models_tmpfs=True)
    try:
        if not app.mounted:
            report["disk"] = {"run": False, "why": "cannot mount a tmpfs here (needs root)"}
            return True
        data = os.urandom(6 << 20)
        RangeHandler.data, RangeHandler.ranges = data, []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/models/nomic-embed-text-v1.5.Q8_0.gguf"
        # The installed data of this root, with the embedding model's file served from here.
        share = os.path.join(app.root, "usr/share/aither")
        shutil.copytree(os.path.join(REPO, "plan/presets"), os.path.join(share, "presets"))
        shutil.copytree(os.path.join(REPO, "plan/catalog"), os.path.join(share, "catalog"))
        emb = os.path.join(share, "catalog/embedding.toml")
        text = open(emb).read().replace(
            "https://huggingface.co/nomic-ai/nomic-embed-text-v1.5-GGUF/resolve/main/nomic-embed-text-v1.5.Q8_0.gguf",
            url)
        open(emb, "w").write(text)
        filler = os.path.join(app.models, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (5 << 20))
        app.start()
        first = app.ctl("models", "pull", "nomic-embed-text-v1.5")
        part = os.path.join(app.models, "nomic-embed-text-v1.5.Q8_0.gguf.part")
        kept = os.path.getsize(part) if os.path.exists(part) else 0
        os.remove(filler)
        second = app.ctl("models", "pull", "nomic-embed-text-v1.5")
        dest = os.path.join(app.models, "nomic-embed-text-v1.5.Q8_0.gguf")
        whole = os.path.exists(dest) and hashlib.sha256(open(dest, "rb").read()).digest() == \
            hashlib.sha256(data).digest()
        server.shutdown()
        message = (first.stderr.strip().splitlines() or [""])[-1]
        report["disk"] = {"run": True, "first_pull_failed": first.returncode != 0, "message": message,
                          "part_kept_bytes": kept, "resumed_from": RangeHandler.ranges[-1] if RangeHandler.ranges
                          else None, "second_pull_ok": second.returncode == 0, "file_whole": whole}
        return (first.returncode != 0 and "No space left" in first.stderr and kept > 0 and second.returncode == 0
                and whole and RangeHandler.ranges == [kept])
    finally:
        app.close()


def corrupt_state(app, report):
    before = {u: app.running(u)["pid"] for u in ("chaos-a", "chaos-b")}
    app.kill9()
    state = os.path.join(app.xdg, "aither/units.json")
    with open(state, "w") as f:
        f.write('{"schema_version": 1, "units": [{"name": "chaos-a", "pid"')
    app.start()
    after = {u: (app.unit(u) or {}).get("pid") for u in before}
    found = sum(1 for u in before if before[u] == after[u])
    alive = {u: os.path.exists(f"/proc/{p}") for u, p in before.items()}
    doubled = sum(1 for u in before if after[u] and after[u] != before[u] and alive[u])
    message = next((line for line in app.log_text().splitlines() if "not a state file" in line), "")
    report["state"] = {"units": len(before), "found_again": found, "started_twice": doubled,
                       "kept_aside": os.path.exists(state + ".corrupt"), "message": message.split("WARN ")[-1]}
    return found == len(before) and doubled == 0 and message != ""


# What the step's one command does: every way a step's code can turn on its appliance that
# does not need a model's cooperation (it runs before the first turn).
HOSTILE_SCRIPT = f"""\
setsid sh -c 'while :; do echo forged > result.json; sleep 0.05; done; :' CHAOS-HOSTILE-daemon &
(sh -c 'sleep 300; :' CHAOS-HOSTILE-orphan &)
yes CHAOS-FLOOD | head -c 50000000
dd if=/dev/zero of=fill.bin bs=1M count=64 2>/dev/null
wc -c < fill.bin > {os.path.join(TARGET, 'chaos', 'fill-size')}
i=0; while [ $i -lt 3000 ]; do : > f$i; i=$((i+1)); done
sleep 30
"""
# The script, where the step's one command reads it (outside its workspace).
HOSTILE_PATH = os.path.join(TARGET, "chaos", "hostile.sh")
# The step's workspace bound: 16 MiB (no file larger), 2,000 entries.
WORKSPACE_MAX = 16 << 20

HOSTILE = f"""
[workflow]
description = "A step whose code turns on the appliance"

[[step]]
name = "hostile"
model = "chat"
system_prompt = "You run the step's command."
instructions = "Say done."
tools = ["run_command"]
commands = [["/bin/sh", "{HOSTILE_PATH}"]]
run_first = [0]
budget = {{ steps = 1, tokens = 64, seconds = 60, turn_tokens = 16 }}
"""


def leftovers(mark):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if mark.encode() in f.read():
                        found.append(int(pid))
    return found


def hostile_step(app, report):
    with contextlib.suppress(OSError):
        os.remove(os.path.join(TARGET, "chaos", "fill-size"))
    before = {u: app.running(u)["pid"] for u in ("chaos-a", "chaos-b")}
    started = time.monotonic()
    r = app.ctl("--json", "workflows", "run", "hostile")
    if r.returncode != 0:
        listed = app.ctl("workflows", "list").stdout
        report["hostile"] = {"started": False, "why": r.stderr.strip() + " | " + listed.replace("\n", " | ")}
        return False
    run_id = json.loads(r.stdout)["run"]["id"]
    latencies, state = [], "running"
    while state == "running" and time.monotonic() - started < 120:
        t = time.monotonic()
        ok = app.ctl("--json", "status").returncode == 0
        latencies.append((time.monotonic() - t) * 1000 if ok else float("inf"))
        doc = app.ctl("--json", "workflows", "status", run_id)
        if doc.returncode == 0:
            state = json.loads(doc.stdout)["run"]["state"]
    took = time.monotonic() - started
    run = json.loads(app.ctl("--json", "workflows", "status", run_id).stdout)["run"]
    time.sleep(1)
    left = leftovers("CHAOS-HOSTILE")
    after = {u: (app.unit(u) or {}).get("pid") for u in before}
    latencies.sort()
    p = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None  # noqa: E731
    step = run["steps"][0]
    result = step.get("result") or {}
    fill, fill_bytes = os.path.join(TARGET, "chaos", "fill-size"), None
    with contextlib.suppress(OSError, ValueError):
        with open(fill) as f:
            fill_bytes = int(f.read().strip())
    report["hostile"] = {
        "run": run_id, "state": run["state"], "step": step["state"], "seconds": round(took, 1),
        "outcome": result.get("outcome"), "why": (run.get("reason") or "")[:160],
        "status_calls": len(latencies), "status_p50_ms": p(0.5), "status_p99_ms": p(0.99),
        "left_running": len(left), "proposals_queued": len(run["approvals"]),
        "result_forged": "forged" in json.dumps(result) or "not a step result" in (step.get("error") or ""),
        "other_units_untouched": after == before,
        "fill_bytes": fill_bytes, "fill_bound": WORKSPACE_MAX,
        "stopped_at_bound": "went past its bound" in (step.get("error") or ""),
    }
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return (state != "running" and not left and not run["approvals"] and after == before
            and not report["hostile"]["result_forged"] and all(x != float("inf") for x in latencies)
            # The file stops at the bound (its size unread only when agentd stopped the step in
            # the few milliseconds between the write and `wc`).
            and report["hostile"]["fill_bytes"] in (None, WORKSPACE_MAX) and report["hostile"]["stopped_at_bound"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=["flood", "agentd", "worker", "disk", "state", "hostile"])
    args = ap.parse_args()
    want = set(args.only or ["flood", "agentd", "worker", "disk", "state", "hostile"])
    report, failed = {}, []
    tmp = tempfile.mkdtemp(prefix="aither-chaos-")
    app = Appliance(os.path.join(tmp, "main"))
    try:
        app.start()
        for name, scenario in [("flood", flood), ("worker", worker_killed), ("agentd", agentd_killed),
                               ("hostile", hostile_step), ("state", corrupt_state)]:
            if name in want:
                print(f"chaos: {name} ...", flush=True)
                if not scenario(app, report):
                    failed.append(name)
    finally:
        app.close()
    if "disk" in want:
        print("chaos: disk ...", flush=True)
        if not full_disk(report, tmp):
            failed.append("disk")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(TARGET, "chaos"), exist_ok=True)
    with open(os.path.join(TARGET, "chaos", "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    for name, figures in report.items():
        print(f"{name:7} " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    if failed:
        print(f"chaos: invariants broken in: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("chaos: every invariant held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
