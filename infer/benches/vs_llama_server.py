#!/usr/bin/env python3
"""aither-infer against llama.cpp's own llama-server, side by side in one run, and the
gateway's added latency.

1. llama-server is built from the newest llama-cpp-python source distribution on PyPI (it
   carries the whole llama.cpp tree, with the server, which llama-cpp-sys-2's copy lacks;
   both ggml versions are printed) with every ggml instruction-set option set explicitly to
   the value of the CPU variant aither-infer loads on this CPU (checked in its /props), in a build
   directory named by those options (a reused directory would keep the options of its first
   configure). Both builds' options are printed, and the benchmark refuses to run when they
   differ. LLAMA_SERVER=PATH uses a binary you built instead (its options cannot be checked).
2. Both serve the same GGUF (tests/models/make_gguf.py, a llama-shaped model with random
   weights; --model uses yours) with the same threads, context, parallel slots and host
   memory for prompts that leave their slots (--cache-ram, llama-server's default 8192 MiB,
   given to both), one after the other on an otherwise idle machine.
3. For 1, 4 and 8 concurrent streams: every stream asks for the same number of tokens
   (greedy, so both servers generate the same tokens); tokens per second of all streams
   together and time to first token, the median of --rounds rounds. Goals: aither-infer at
   least llama-server's throughput, and at most its time to first token, at every level.
   Each level sends the prompts of the one before again (round r's stream i asks
   "request r i"): a prompt that left its slot comes back from --cache-ram on both servers.
4. Agents sharing a system prompt: 8 requests at once whose prompts start with the same
   ~1,000-token system prompt (a new one each round) and end with different questions;
   the median time to first token and the time until all 8 have their answers, against
   llama-server with its prompt cache on. Goal: TTFT at most 0.5x llama-server's.
5. Constrained generation (aither-infer): the same prompt answered freely and constrained by
   the grammar of a tool call's shape (its arguments' JSON schema); time per generated
   token, the prompt cached. Goal: at most 10 % slower per token. The chat tool call itself is
   shown too: its prompt carries the tools' instructions, so its tokens cost more for the
   longer context, not the grammar.
6. With --tool-eval (a real model): the eval's tool-calling suite (`aitherctl eval tools`, 100
   cases, --tool-eval-seeds seeds) through each server on the same model and flags, one
   server at a time: calls made where one was asked for, arguments valid, answers right.
7. The gateway: agentd in development mode (a private bus, a test root) serving the model
   through its gateway; time to first token of one-token streams straight to the worker's
   Unix socket and through the gateway on TCP, alternated; the difference of the medians is
   the gateway's cost. Goal: at most 1 ms at p50.

Usage: infer/benches/vs_llama_server.py [--threads N] [--tokens N] [--rounds N] [--model GGUF]
(`make bench-infer` builds aither-infer and agentd in release mode first.)
"""
import argparse
import glob
import hashlib
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


# ggml's instruction-set options: each is set explicitly for llama-server to aither-infer's value.
ISA_OPTIONS = ["GGML_NATIVE", "GGML_SSE42", "GGML_AVX", "GGML_AVX_VNNI", "GGML_AVX2", "GGML_BMI2", "GGML_FMA",
               "GGML_F16C", "GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16",
               "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_CPU_ALL_VARIANTS", "GGML_BACKEND_DL",
               "GGML_OPENMP"]


def cmake_options(cache):
    """The ggml instruction-set options recorded in a CMakeCache.txt (absent: None)."""
    found = {}
    for line in open(cache):
        m = re.match(r"^(GGML_[A-Z0-9_]+):BOOL=(\S+)", line)
        if m and m.group(1) in ISA_OPTIONS:
            found[m.group(1)] = "ON" if m.group(2).upper() in ("ON", "TRUE", "1", "YES") else "OFF"
    return found


# ggml's x86-64 CPU variants (ggml/src/CMakeLists.txt) with the instruction sets each is built
# for, and the /proc/cpuinfo flag of each instruction set.
VARIANTS = {
    "x64": [], "sse42": ["SSE42"], "sandybridge": ["SSE42", "AVX"], "ivybridge": ["SSE42", "AVX", "F16C"],
    "piledriver": ["SSE42", "AVX", "F16C", "FMA"],
    "haswell": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"],
    "skylakex": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512"],
    "cannonlake": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI"],
    "cascadelake": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI"],
    "icelake": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI", "AVX512_VNNI"],
    "cooperlake": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI", "AVX512_BF16"],
    "zen4": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"],
    "alderlake": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX_VNNI"],
    "sapphirerapids": ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI", "AVX512_VNNI",
                       "AVX512_BF16", "AMX_TILE", "AMX_INT8"],
}
CPUINFO_FLAG = {"SSE42": "sse4_2", "AVX": "avx", "F16C": "f16c", "FMA": "fma", "AVX2": "avx2", "BMI2": "bmi2",
                "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
                "AVX512_BF16": "avx512_bf16", "AVX_VNNI": "avx_vnni", "AMX_TILE": "amx_tile", "AMX_INT8": "amx_int8"}


def our_variant():
    """The CPU variant aither-infer will load: of the modules its release build made, the one
    with the most instruction sets this CPU has (checked against /props once it runs)."""
    built = [os.path.basename(p)[len("libggml-cpu-"):-3] for p in glob.glob(os.path.join(TARGET, "ggml", "libggml-cpu-*.so"))]
    if not built:
        raise SystemExit(f"no ggml CPU modules in {TARGET}/ggml: build aither-infer in release first")
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    runs = [v for v in built if v in VARIANTS and all(CPUINFO_FLAG[f] in flags for f in VARIANTS[v])]
    if not runs:
        raise SystemExit(f"none of the built CPU variants ({', '.join(built)}) runs on this CPU")
    return max(runs, key=lambda v: len(VARIANTS[v]))


def our_options(variant):
    """The ggml options of one CPU variant, as a whole-program build (llama-server's) sets them."""
    opts = {k: "OFF" for k in ISA_OPTIONS}
    for f in VARIANTS[variant]:
        opts["GGML_" + f] = "ON"
    opts["GGML_OPENMP"] = "ON"
    return opts


def llama_server(options):
    if os.environ.get("LLAMA_SERVER"):
        return os.environ["LLAMA_SERVER"], "(given)", "?", {}
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
    # One build directory per set of options: CMake keeps a cached option's first value.
    tag = "-".join(f"{k[5:].lower()}{'1' if v == 'ON' else '0'}" for k, v in sorted(options.items()))
    build = os.path.join(tree, "build-server-" + hashlib.sha256(tag.encode()).hexdigest()[:12])
    binary = os.path.join(build, "bin", "llama-server")
    if not os.path.exists(binary):
        defines = [f"-D{k}={v}" for k, v in sorted(options.items())]
        subprocess.run(["cmake", "-S", tree, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                        "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DLLAMA_BUILD_SERVER=ON", *defines], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", "llama-server"],
                       check=True, stdout=subprocess.DEVNULL)
    return binary, release, ggml_version(tree), cmake_options(os.path.join(build, "CMakeCache.txt"))


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


def stream(target, prompt, tokens, headers=None, extra=None, path="/v1/completions"):
    """One streamed completion: (seconds to the first token, tokens, seconds in all, seconds
    from the first token to the last)."""
    req = {"max_tokens": tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if path == "/v1/completions":
        req["prompt"] = prompt
    else:
        req["messages"] = [{"role": "user", "content": prompt}]
    req.update(extra or {})
    body = json.dumps(req)
    c = connect(target)
    t0 = time.perf_counter()
    c.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{target}: HTTP {r.status}: {r.read()[:300]!r}")
    first, last, chunks, usage = None, None, 0, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"].get("completion_tokens")
        ch = ev.get("choices") or [{}]
        if ch[0].get("text") or (ch[0].get("delta") or {}).get("content") or (ch[0].get("delta") or {}).get("tool_calls"):
            chunks += 1
            last = time.perf_counter() - t0
            if first is None:
                first = last
    total = time.perf_counter() - t0
    c.close()
    first = first if first is not None else total
    return first, usage if usage is not None else chunks, total, (last or total) - first


def post_json(target, path, body):
    c = connect(target)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{target} {path}: HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


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


# The fewest first tokens timed per level: a median of three (one stream, three rounds) moved
# by 10 ms from run to run while 15 of them agreed between the servers within 1 ms.
TTFT_SAMPLES = 24


def load(target, concurrency, tokens, rounds):
    """Median tokens/s and median time to first token over rounds of `concurrency` streams
    (as many rounds as give TTFT_SAMPLES first tokens, if that is more)."""
    rates, ttfts = [], []
    for r in range(max(rounds, -(-TTFT_SAMPLES // concurrency))):
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


SYSTEM_WORDS = ("You are one agent of a research workflow on this appliance. Read the sources in your workspace, "
                "cite each claim with its file and line, and write your findings as plain sentences. ").split()


def agents(target, args, n=8, system_tokens=1000):
    """n requests at once sharing a ~system_tokens system prompt (a new one each round):
    median time to first token, and median time until all n have finished."""
    ttfts, walls = [], []
    for r in range(args.rounds):
        words = [f"{w}{r}" if i % 7 == 0 else w for i, w in enumerate(SYSTEM_WORDS * (system_tokens // 4))]
        # As many words as make about system_tokens tokens of this model (both servers
        # tokenize alike: llama-server's /tokenize is the same route).
        while True:
            system = " ".join(words)
            n_tok = len(post_json(target, "/tokenize", {"content": system})["tokens"])
            if n_tok <= system_tokens:
                break
            words = words[:max(1, int(len(words) * system_tokens / n_tok * 0.98))]
        results = [None] * n

        def one(i):
            results[i] = stream(target, f"{system}\nQuestion {i}: what does source {i} say?\nAnswer:", args.agent_tokens)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        walls.append(time.perf_counter() - t0)
        ttfts.extend(x[0] for x in results)
    return statistics.median(ttfts), statistics.median(walls)


TOOL = [{"type": "function", "function": {"name": "write_report", "description": "write the report",
         "parameters": {"type": "object", "properties": {"title": {"type": "string", "minLength": 400},
                                                         "pages": {"type": "integer"}},
                        "required": ["title", "pages"], "additionalProperties": False}}}]


def timed(target, body):
    """One request answered whole: (seconds, completion tokens)."""
    t0 = time.perf_counter()
    r = post_json(target, "/v1/chat/completions", body)
    return time.perf_counter() - t0, r["usage"]["completion_tokens"]


def constrained(target, args):
    """Seconds per generated token on the same prompt, answered freely and constrained by a
    grammar to a tool call's shape (the tool's JSON schema inside the generic
    `{"tool_calls": [...]}` form), through `/v1/completions` with llama-server's `json_schema`
    field. Each request is sent once before it is timed, so both find the prompt cached and the
    time is the generation's. Also the chat tool call itself (`tool_choice: required`), whose
    prompt carries the tools' instructions (hundreds of tokens more context), for reference."""
    call = {"type": "object", "properties": {"tool_calls": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
        "type": "object", "properties": {"name": {"const": TOOL[0]["function"]["name"]},
                                         "arguments": TOOL[0]["function"]["parameters"]},
        "required": ["name", "arguments"], "additionalProperties": False}}},
        "required": ["tool_calls"], "additionalProperties": False}
    free, tool, chat = [], [], []
    for r in range(args.rounds):
        prompt = f"<s>user: Write the report {r}.\nassistant:"
        ask = {"prompt": prompt, "max_tokens": args.tokens, "temperature": 0}
        for body, out in ((ask, free), (dict(ask, json_schema=call), tool)):
            post_json(target, "/v1/completions", body)
            t0 = time.perf_counter()
            n = post_json(target, "/v1/completions", body)["usage"]["completion_tokens"]
            out.append((time.perf_counter() - t0) / max(1, n))
        body = {"messages": [{"role": "user", "content": f"Write the report {r}."}], "max_tokens": args.tokens,
                "temperature": 0, "tools": TOOL, "tool_choice": "required"}
        timed(target, body)
        seconds, n = timed(target, body)
        chat.append(seconds / max(1, n))
    return statistics.median(free), statistics.median(tool), statistics.median(chat)


def serve_and_measure(name, argv, target, args, levels, ours=False):
    log = open(os.path.join(CACHE, f"bench-{name}.log"), "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(target, proc, name)
        if ours:
            conn = http.client.HTTPConnection("127.0.0.1", target[1], timeout=30)
            conn.request("GET", "/props")
            loaded = json.loads(conn.getresponse().read())["backends"]["cpu_variant"]
            if loaded != ours:
                raise SystemExit(f"aither-infer loaded the {loaded} CPU variant, llama-server was built as {ours}: "
                                 "not comparing unlike builds")
        stream(target, "warm up", 8)
        out = {c: load(target, c, args.tokens, args.rounds) for c in levels}
        out["agents"] = agents(target, args)
        if ours:
            out["constrained"] = constrained(target, args)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def tool_eval(name, argv, port, args):
    """The eval's tool-calling suite against one server; its figures."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(("tcp", port), proc, name)
        out = os.path.join(ROOT, "target", "eval", f"tools-{name}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([os.path.join(TARGET, "aitherctl"), "eval", "tools", "--endpoint", f"http://127.0.0.1:{port}",
                        "--model", "chat", "--seeds", str(args.tool_eval_seeds), "--jobs", "1",
                        "--work-dir", os.path.join(ROOT, "target", "eval", f"work-{name}"), "--output", out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["suites"][0]
    finally:
        proc.terminate()
        proc.wait()


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
    ap.add_argument("--ctx", type=int, default=16384, help="KV cells for the 8 slots together (2,048 each)")
    ap.add_argument("--agent-tokens", type=int, default=16, help="tokens each agent asks for")
    ap.add_argument("--cache-ram", type=int, default=8192,
                    help="MiB of host memory for prompts that leave their slots, both servers (llama-server's default)")
    ap.add_argument("--model")
    ap.add_argument("--gateway-samples", type=int, default=100)
    ap.add_argument("--only", choices=["servers", "gateway", "tools"], help="run one part of the benchmark")
    ap.add_argument("--tool-eval", action="store_true", help="the eval's tool-calling suite through both servers (a real model)")
    ap.add_argument("--tool-eval-seeds", type=int, default=3)
    args = ap.parse_args()
    levels = [1, 4, 8]
    sys_version, our_tree = our_llama_tree()
    variant = our_variant()
    mine = our_options(variant)
    server, release, their_ggml, theirs_opts = llama_server(mine)
    model = bench_model(args)
    if args.only == "gateway":
        direct, via = gateway_overhead(model, args)
        print(f"gateway: time to first token p50 {direct * 1000:.2f} ms straight to the worker, {via * 1000:.2f} ms "
              f"through the gateway: {1000 * (via - direct):+.2f} ms")
        return
    print(f"aither-infer: llama-cpp-sys-2 {sys_version}, ggml {ggml_version(our_tree)}, CPU variant {variant}")
    print(f"llama-server: llama-cpp-python {release}, ggml {their_ggml}")
    print("ggml options   " + " ".join(f"{k[5:]}" for k in sorted(mine)))
    print("  aither-infer " + " ".join(f"{mine[k]:>{len(k) - 5}}" for k in sorted(mine)))
    if theirs_opts:
        print("  llama-server " + " ".join(f"{theirs_opts.get(k, '?'):>{len(k) - 5}}" for k in sorted(mine)))
        differ = sorted(k for k in set(mine) | set(theirs_opts) if mine.get(k) != theirs_opts.get(k))
        if differ:
            raise SystemExit(f"the two builds differ in {', '.join(differ)}: not comparing unlike builds")
    if args.tool_eval or args.only == "tools":
        pt1, pt2 = free_port(), free_port()
        flags = ["-t", str(args.threads), "-tb", str(args.threads), "-c", "4096", "-np", "1"]
        theirs_t = tool_eval("llama-server", [server, "-m", model, *flags, "--jinja", "--host", "127.0.0.1",
                                              "--port", str(pt1), "--no-webui"], pt1, args)
        ours_t = tool_eval("aither-infer", [os.path.join(TARGET, "aither-infer"), "--model", model, "--threads",
                                            str(args.threads), "--ctx", "4096", "--parallel", "1",
                                            "--listen", f"tcp:127.0.0.1:{pt2}"], pt2, args)
        print(f"tool calling, the eval's suite ({theirs_t['runs']} runs each, model {os.path.basename(model)}, "
              f"{args.threads} thread(s), one slot of 4,096 tokens, temperature 0.2):")
        print(f"{'':>14} {'right':>14} {'calls made':>11} {'args valid':>11} {'simple':>7} {'multiple':>9} "
              f"{'parallel':>9} {'irrelevance':>12} {'s/run':>6}")
        for n, t in (("llama-server", theirs_t), ("aither-infer", ours_t)):
            m = t["metrics"]
            print(f"{n:>14} {100 * t['pass_rate']:>5.0f} % ({100 * t['low']:.0f}-{100 * t['high']:.0f}) "
                  f"{100 * m.get('calls_made', 0):>9.0f} % {100 * m.get('arguments_valid', 0):>9.0f} % "
                  f"{100 * m.get('simple', 0):>5.0f} % {100 * m.get('multiple', 0):>7.0f} % {100 * m.get('parallel', 0):>7.0f} % "
                  f"{100 * m.get('irrelevance', 0):>10.0f} % {t['seconds_per_run']:>6.1f}")
        print()
        if args.only == "tools":
            return
    print(f"model {os.path.basename(model)}, {args.threads} thread(s), ctx {args.ctx}, 8 slots, cache-ram {args.cache_ram} MiB, "
          f"{args.tokens} tokens per stream, median of {args.rounds} rounds "
          f"(at least {TTFT_SAMPLES} first tokens per level)\n")
    common = ["--model", model, "--threads", str(args.threads), "--ctx", str(args.ctx), "--parallel", "8",
              "--cache-ram", str(args.cache_ram)]
    p1, p2 = free_port(), free_port()
    theirs = serve_and_measure("llama-server", [server, "-m", model, "-t", str(args.threads), "-tb", str(args.threads),
                                                "-c", str(args.ctx), "-np", "8", "--cache-ram", str(args.cache_ram),
                                                "--host", "127.0.0.1", "--port", str(p1),
                                                "--no-webui"],
                               ("tcp", p1), args, levels)
    ours = serve_and_measure("aither-infer", [os.path.join(TARGET, "aither-infer"), *common, "--listen", f"tcp:127.0.0.1:{p2}"],
                             ("tcp", p2), args, levels, ours=variant)
    print(f"{'streams':>8} {'llama-server tok/s':>19} {'aither-infer tok/s':>19} {'ratio':>7} {'TTFT theirs':>12} {'TTFT ours':>10}")
    worst, ttft_worst = None, None
    for c in levels:
        (tr, tt), (orate, ot) = theirs[c], ours[c]
        ratio = orate / tr
        worst = ratio if worst is None else min(worst, ratio)
        ttft_worst = ot / tt if c == levels[0] else max(ttft_worst, ot / tt)
        print(f"{c:>8} {tr:>19.1f} {orate:>19.1f} {ratio:>7.3f} {tt * 1000:>10.1f}ms {ot * 1000:>8.1f}ms")
    (ta, twall), (oa, owall) = theirs["agents"], ours["agents"]
    print(f"\n8 agents, ~1,000-token shared system prompt: TTFT p50 llama-server {ta * 1000:.0f} ms, aither-infer "
          f"{oa * 1000:.0f} ms ({oa / ta:.2f}x); all answered in {twall:.2f} s and {owall:.2f} s ({owall / twall:.2f}x)")
    free, tool, chat = ours["constrained"]
    print(f"constrained generation (aither-infer), same prompt: {free * 1000:.2f} ms per token free, {tool * 1000:.2f} ms "
          f"constrained to a tool call's grammar ({tool / free:.2f}x); the chat tool call, its longer prompt included: "
          f"{chat * 1000:.2f} ms per token ({chat / free:.2f}x)")
    if args.only == "servers":
        return
    direct, via = gateway_overhead(model, args)
    print(f"\ngateway: time to first token p50 {direct * 1000:.2f} ms straight to the worker, {via * 1000:.2f} ms through the "
          f"gateway: {1000 * (via - direct):+.2f} ms")
    print(f"\ngoals: throughput ratio >= 1.0 at every level: {'met' if worst >= 1.0 else 'NOT met'} (worst {worst:.3f}); "
          f"TTFT <= 1.0x at every level: {'met' if ttft_worst <= 1.0 else 'NOT met'} (worst {ttft_worst:.2f}x); "
          f"shared-prompt TTFT <= 0.5x: {'met' if oa / ta <= 0.5 else 'NOT met'}; "
          f"constrained <= 1.1x per token: {'met' if tool / free <= 1.1 else 'NOT met'}; "
          f"gateway p50 overhead <= 1 ms: {'met' if via - direct <= 0.001 else 'NOT met'}")


if __name__ == "__main__":
    main()
