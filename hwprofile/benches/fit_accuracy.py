#!/usr/bin/env python3
"""Memory-fit accuracy: aither-hwprofile's estimate against what llama.cpp allocates.

For each case a llama-architecture GGUF of a real model's shape is written with random
weights (tests/models/make_gguf.py), llama.cpp loads it on the CPU with the given context
and KV cache type, and the buffer sizes it reports (model, KV cache, output, compute) are
compared with `aither-hwprofile fit` on the same file. Goal: within 5 % or 256 MiB.

llama.cpp is built from the llama-cpp-python source distribution (it carries the whole
tree) into .cache/llama unless LLAMA_CPP_BIN names a directory holding llama-completion.

Usage: hwprofile/benches/fit_accuracy.py      (after cargo build -p aither-hwprofile)
"""
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.path.join(ROOT, ".cache")
MIB = 1 << 20

# name: (make_gguf arguments, [(context, kv type, flash attention)])
CASES = {
    "tiny-f16": (["--layers", "4", "--embd", "256", "--heads", "4", "--kv-heads", "2", "--ff", "512", "--vocab", "512",
                  "--type", "f16"], [(2048, "f16", "on"), (8192, "f16", "on"), (8192, "f16", "off")]),
    "qwen2.5-0.5b-shape-q8_0": (["--layers", "24", "--embd", "896", "--heads", "14", "--kv-heads", "2", "--ff", "4864",
                                 "--vocab", "151936", "--ctx", "32768", "--type", "q8_0"],
                                [(4096, "f16", "on"), (32768, "f16", "on"), (32768, "q8_0", "on"), (32768, "f16", "off")]),
    "llama-3.2-1b-shape-q8_0": (["--layers", "16", "--embd", "2048", "--heads", "32", "--kv-heads", "8", "--ff", "8192",
                                 "--vocab", "128256", "--ctx", "131072", "--type", "q8_0"],
                                [(8192, "f16", "on"), (32768, "q8_0", "on"), (65536, "f16", "on"), (8192, "f16", "off")]),
}


def llama_bin():
    env = os.environ.get("LLAMA_CPP_BIN")
    if env:
        return os.path.join(env, "llama-completion")
    found = glob.glob(os.path.join(CACHE, "llama", "llama_cpp_python-*", "vendor", "llama.cpp", "build", "bin", "llama-completion"))
    if found:
        return found[0]
    src_dir = os.path.join(CACHE, "llama")
    os.makedirs(src_dir, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "llama-cpp-python", "-d", src_dir], check=True)
    tar = sorted(glob.glob(os.path.join(src_dir, "llama_cpp_python-*.tar.gz")))[-1]
    subprocess.run(["tar", "xzf", tar, "-C", src_dir], check=True)
    tree = glob.glob(os.path.join(src_dir, "llama_cpp_python-*", "vendor", "llama.cpp"))[0]
    subprocess.run(["cmake", "-S", tree, "-B", os.path.join(tree, "build"), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF"], check=True)
    subprocess.run(["cmake", "--build", os.path.join(tree, "build"), "-j2", "--target", "llama-completion"], check=True)
    return os.path.join(tree, "build", "bin", "llama-completion")


def model(name, args):
    path = os.path.join(CACHE, "models", name + ".gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        py = os.path.join(ROOT, ".venv", "bin", "python")
        subprocess.run([py if os.path.exists(py) else sys.executable, os.path.join(ROOT, "tests", "models", "make_gguf.py"), path + ".tmp"] + args, check=True)
        os.rename(path + ".tmp", path)
    return path


def measure(binary, path, ctx, kv, fa):
    out = subprocess.run([binary, "-m", path, "-c", str(ctx), "-n", "1", "-p", "hi", "-t", "1", "-no-cnv", "-v",
                          "-ctk", kv, "-ctv", kv, "-fa", fa], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    log = out.stdout + out.stderr
    last = lambda pat: [float(x) for x in re.findall(pat, log)]
    # The last load is the real one (llama.cpp first projects a fit with a dry run).
    model_mib = sum(last(r"load_tensors:\s+\S+ model buffer size =\s+([\d.]+) MiB")[-1:])
    repack = last(r"load_tensors:\s+CPU_REPACK model buffer size =\s+([\d.]+) MiB")
    kv_mib = last(r"CPU KV buffer size =\s+([\d.]+) MiB")[-1]
    out_mib = last(r"CPU\s+output buffer size =\s+([\d.]+) MiB")[-1]
    compute_mib = last(r"CPU compute buffer size =\s+([\d.]+) MiB")[-1]
    return {"model": model_mib + (repack[-1] if repack else 0), "kv": kv_mib, "output": out_mib, "compute": compute_mib}


def estimate(path, ctx, kv, fa):
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "aither-hwprofile")
    out = subprocess.run([binary, "fit", path, "--context", str(ctx), "--kv-cache-type", kv, "--format", "json",
                          "--flash-attention", "true" if fa == "on" else "false"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    binary = llama_bin()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    print("llama.cpp:", (version.stdout + version.stderr).strip().splitlines()[0])
    print(f"{'case':<28} {'ctx':>6} {'kv':>5} {'fa':>3} | {'llama.cpp MiB (model+kv+compute)':>34} | {'ours MiB':>24} | {'error':>8} {'MiB':>7}  goal")
    misses = 0
    for name, (args, runs) in CASES.items():
        path = model(name, args)
        for ctx, kv, fa in runs:
            m = measure(binary, path, ctx, kv, fa)
            e = estimate(path, ctx, kv, fa)
            theirs = m["model"] + m["kv"] + m["output"] + m["compute"]
            ours = e["total_bytes"] / MIB
            err = (ours - theirs) / theirs * 100
            ok = abs(err) <= 5 or abs(ours - theirs) <= 256
            misses += not ok
            print(f"{name:<28} {ctx:>6} {kv:>5} {fa:>3} | {m['model']:>9.1f} +{m['kv']:>8.1f} +{m['compute']:>8.1f} = {theirs:>7.1f} | "
                  f"{e['weights_bytes'] / MIB:>7.1f}/{e['kv_cache_bytes'] / MIB:>6.1f}/{e['compute_bytes'] / MIB:>6.1f} {ours:>7.1f} | "
                  f"{err:>+7.2f}% {ours - theirs:>+7.1f}  {'ok' if ok else 'MISS'}")
    print(f"{misses} case(s) outside the goal (5 % or 256 MiB)")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
