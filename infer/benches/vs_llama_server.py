#!/usr/bin/env python3
"""aither-infer against llama.cpp's own llama-server, side by side in one run, and the
gateway's added latency.

1. llama-server is built from the newest llama-cpp-python source distribution on PyPI (it
   carries the whole llama.cpp tree; its llama.cpp is the release closest to the one
   llama-cpp-sys-2 ships to aither-infer: both ggml versions are printed). LLAMA_SERVER=PATH
   uses a binary you built instead.
2. Both serve the same GGUF (tests/models/make_gguf.py, a llama-shaped model with random
   weights; --model uses yours) with the same threads, context and parallel slots, one after
   the other on an otherwise idle machine.
3. For 1, 4 and 8 concurrent streams: every stream asks for the same number of tokens
   (greedy, so both servers generate the same tokens); tokens per second of all streams
   together and time to first token, the median of --rounds rounds. Goal: aither-infer at
   least 95 % of llama-server's throughput at every level.
4. The gateway: agentd in development mode (a private bus, a test root) serving the model
   through its gateway; time to first token of one-token streams straight to the worker's
   Unix socket and through the gateway on TCP, alternated; the difference of the medians is
   the gateway's cost. Goal: at most 1 ms at p50.

Usage: infer/benches/vs_llama_server.py [--threads N] [--tokens N] [--rounds N] [--model GGUF]
(`make bench-infer` builds aither-infer and agentd in release mode first.)
"""
import argparse
import glob
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.path.join(ROOT, ".cache")
TARGET = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")


def ggml_version(tree):
    text = open(os.path.join(tree, "ggml", "CMakeLists.txt")).read()
    parts = [re.search(rf"set\(GGML_VERSION_{k} (\d+)\)", text).group(1) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def our_llama_tree():
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT))
    pkg = next(p for p in meta["packages"] if p["name"] == "llama-cpp-sys-2")
    return pkg["version"], os.path.join(os.path.dirname(pkg["manifest_path"]), "llama.cpp")


def llama_server():
    if os.environ.get("LLAMA_SERVER"):
        return os.environ["LLAMA_SERVER"], "(given)", "?"
    d = os.path.join(CACHE, "llama")
    os.makedirs(d, exist_ok=True)
    trees = sorted(glob.glob(os.path.join(d, "llama_cpp_python-*", "vendor", "llama.cpp")))
    if not trees:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "llama-cpp-python", "-d", d], check=True)
        tar = sorted(glob.glob(os.path.join(d, "llama_cpp_python-*.tar.gz")))[-1]
        subprocess.run(["tar", "xzf", tar, "-C", d], check=True)
        trees = sorted(glob.glob(os.path.join(d, "llama_cpp_python-*", "vendor", "llama.cpp")))
    tree = trees[-1]
    release = tree.split("llama_cpp_python-")[1].split("/")[0]
    build = os.path.join(tree, "build-server")
    binary = os.path.join(build, "bin", "llama-server")
    if not os.path.exists(binary):
        subprocess.run(["cmake", "-S", tree, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                        "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DLLAMA_BUILD_SERVER=ON"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", "llama-server"],
                       check=True, stdout=subprocess.DEVNULL)
    return binary, release, ggml_version(tree)


def bench_model(args):
    if args.model:
        return args.model
    path = os.path.join(CACHE, "models", "bench-100m-q8_0.gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "models", "make_gguf.py"), path + ".tmp",
                        "--layers", "8", "--embd", "768", "--heads", "12", "--kv-heads", "4", "--ff", "2048",
                        "--vocab", "32000", "--ctx", "8192", "--type", "q8_0", "--name", "bench-100m"], check=True)
        os.rename(path + ".tmp", path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=600):
        super().__init__("localhost", timeout=timeout)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path_)


def connect(target):
    kind, where = target
    if kind == "unix":
        return UnixConnection(where)
    c = http.client.HTTPConnection("127.0.0.1", where, timeout=600)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def stream(target, prompt, tokens, headers=None):
    """One streamed completion: (seconds to the first token, tokens, seconds in all)."""
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    c = connect(target)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{target}: HTTP {r.status}: {r.read()[:300]!r}")
    first, chunks, usage = None, 0, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"].get("completion_tokens")
        if ev.get("choices") and ev["choices"][0].get("text"):
            chunks += 1
            if first is None:
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    c.close()
    return first if first is not None else total, usage if usage is not None else chunks, total


def wait_ready(target, proc, what):
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            c = connect(target)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not become ready")


def load(target, concurrency, tokens, rounds):
    """Median tokens/s and median time to first token over rounds of `concurrency` streams."""
    rates, ttfts = [], []
    for r in range(rounds):
        results = [None] * concurrency

        def one(i):
            results[i] = stream(target, f"request {r} {i}: the appliance", tokens)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rates.append(sum(x[1] for x in results) / wall)
        ttfts.extend(x[0] for x in results)
    return statistics.median(rates), statistics.median(ttfts)


def serve_and_measure(name, argv, target, args, levels):
    log = open(os.path.join(CACHE, f"bench-{name}.log"), "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(target, proc, name)
        stream(target, "warm up", 8)
        return {c: load(target, c, args.tokens, args.rounds) for c in levels}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def gateway_overhead(model, args):
    """TTFT straight to the worker vs through the gateway, in one agentd."""
    tmp = tempfile.mkdtemp(prefix="aither-bench-")
    bus = os.path.join(tmp, "bus")
    conf = os.path.join(tmp, "bus.conf")
    open(conf, "w").write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={bus}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/></policy></busconfig>""")
    dbus = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = os.path.join(tmp, "root")
    models = os.path.join(root, "var/lib/aither/models")
    os.makedirs(models)
    os.makedirs(os.path.join(root, "etc/aither"))
    # The minimal preset's chat model, pinned, is the benchmark model.
    os.symlink(model, os.path.join(models, "Qwen2.5-14B-Instruct-Q4_K_M.gguf"))
    port = free_port()
    open(os.path.join(root, "etc/aither/appliance.toml"), "w").write('preset = "minimal"\n')
    open(os.path.join(root, "etc/aither/agentd.toml"), "w").write(
        f'[gateway]\nlisten = ["127.0.0.1:{port}"]\n[infer]\nbinary = "{TARGET}/aither-infer"\nmodel_dir = "{models}"\n')
    profile = json.load(open(os.path.join(ROOT, "tests/fixtures/profiles/profile-1gpu.json")))
    profile["cpu"]["physical_cores"] = profile["cpu"]["logical_cores"] = max(2, args.threads + 1)
    prof_path = os.path.join(tmp, "profile.json")
    json.dump(profile, open(prof_path, "w"))
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=f"unix:path={bus}", XDG_RUNTIME_DIR=os.path.join(tmp, "xdg"))
    os.makedirs(env["XDG_RUNTIME_DIR"])
    while not os.path.exists(bus):
        time.sleep(0.02)
    agentd = subprocess.Popen([os.path.join(TARGET, "agentd"), "--dev", "--root", root, "--profile", prof_path], env=env,
                              stdout=open(os.path.join(CACHE, "bench-agentd.log"), "w"), stderr=subprocess.STDOUT)
    sock = os.path.join(tmp, "xdg/aither/infer/qwen2.5-14b-instruct.sock")
    try:
        deadline = time.time() + 300
        while not os.path.exists(sock):
            if time.time() > deadline or agentd.poll() is not None:
                raise SystemExit("agentd did not start the worker (see .cache/bench-agentd.log)")
            time.sleep(0.1)
        direct, gateway = ("unix", sock), ("tcp", port)
        wait_ready(direct, agentd, "the worker")
        wait_ready(gateway, agentd, "the gateway")
        # TCP clients of the gateway send its key (development mode writes it under the root).
        key = {"Authorization": "Bearer " + open(os.path.join(root, "etc/aither/gateway.key")).read().strip()}
        for _ in range(5):
            stream(direct, "warm", 1)
            stream(gateway, "warm", 1, key)
        d, g = [], []
        for i in range(args.gateway_samples):
            d.append(stream(direct, f"ping {i}", 1)[0])
            g.append(stream(gateway, f"ping {i}", 1, key)[0])
        return statistics.median(d), statistics.median(g)
    finally:
        agentd.terminate()
        agentd.wait(timeout=60)
        dbus.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both servers (default 1: the client gets the other core)")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per stream")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--model")
    ap.add_argument("--gateway-samples", type=int, default=100)
    ap.add_argument("--only", choices=["servers", "gateway"], help="run one half of the benchmark")
    args = ap.parse_args()
    levels = [1, 4, 8]
    sys_version, our_tree = our_llama_tree()
    server, release, their_ggml = llama_server()
    model = bench_model(args)
    if args.only == "gateway":
        direct, via = gateway_overhead(model, args)
        print(f"gateway: time to first token p50 {direct * 1000:.2f} ms straight to the worker, {via * 1000:.2f} ms "
              f"through the gateway: {1000 * (via - direct):+.2f} ms")
        return
    print(f"aither-infer: llama-cpp-sys-2 {sys_version}, ggml {ggml_version(our_tree)}")
    print(f"llama-server: llama-cpp-python {release}, ggml {their_ggml}")
    print(f"model {os.path.basename(model)}, {args.threads} thread(s), ctx {args.ctx}, 8 slots, {args.tokens} tokens per stream, "
          f"median of {args.rounds} rounds\n")
    common = ["--model", model, "--threads", str(args.threads), "--ctx", str(args.ctx), "--parallel", "8"]
    p1, p2 = free_port(), free_port()
    theirs = serve_and_measure("llama-server", [server, "-m", model, "-t", str(args.threads), "-tb", str(args.threads),
                                                "-c", str(args.ctx), "-np", "8", "--host", "127.0.0.1", "--port", str(p1),
                                                "--no-webui"],
                               ("tcp", p1), args, levels)
    ours = serve_and_measure("aither-infer", [os.path.join(TARGET, "aither-infer"), *common, "--listen", f"tcp:127.0.0.1:{p2}"],
                             ("tcp", p2), args, levels)
    print(f"{'streams':>8} {'llama-server tok/s':>19} {'aither-infer tok/s':>19} {'ratio':>7} {'TTFT theirs':>12} {'TTFT ours':>10}")
    worst = None
    for c in levels:
        (tr, tt), (orate, ot) = theirs[c], ours[c]
        ratio = orate / tr
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{c:>8} {tr:>19.1f} {orate:>19.1f} {ratio:>7.3f} {tt * 1000:>10.1f}ms {ot * 1000:>8.1f}ms")
    if args.only == "servers":
        return
    direct, via = gateway_overhead(model, args)
    print(f"\ngateway: time to first token p50 {direct * 1000:.2f} ms straight to the worker, {via * 1000:.2f} ms through the "
          f"gateway: {1000 * (via - direct):+.2f} ms")
    print(f"\ngoals: throughput ratio >= 0.95 at every level: {'met' if worst >= 0.95 else 'NOT met'} (worst {worst:.3f}); "
          f"gateway p50 overhead <= 1 ms: {'met' if via - direct <= 0.001 else 'NOT met'}")


if __name__ == "__main__":
    main()
