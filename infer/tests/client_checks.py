"""What the client scripts of these tests share: their arguments and how a check is told.

    SCRIPT BASE_URL MODEL [--api-key KEY]
"""
import sys


def arguments():
    """(base URL, model, API key): the key is "none" unless --api-key gives one."""
    key = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--api-key" else "none"
    return sys.argv[1], sys.argv[2], key


def check(name, ok, detail=""):
    """One line per check; exits non-zero on the first failure."""
    print(("ok " if ok else "not ok ") + name + (f": {detail}" if detail and not ok else ""))
    if not ok:
        sys.exit(1)
