#!/usr/bin/env python3
"""Flatten the AitherOS kickstart variants and validate them.

    kickstart/build.py OUTDIR [VARIANT...]     (default: iso qcow2 cloud)

For each variant, kickstart/VARIANT.ks with its fragments (%include fragments/...) becomes
one file, OUTDIR/aitheros-VARIANT.ks, through pykickstart's ksflatten for RHEL 9. Includes of
files that %pre writes at install time (`%include /tmp/...`) do not exist when flattening:
they are kept as includes at the end of the result.

Each result is then checked with `ksvalidator -v RHEL9`; any error fails the build, naming
the variant and the line.
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ["iso", "qcow2", "cloud"]
RUNTIME = re.compile(r"^%include\s+/tmp/")


def tool(name):
    """pykickstart's tool beside the Python running this (the project's venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else name


def build(variant, outdir):
    src = os.path.join(HERE, f"{variant}.ks")
    lines = open(src).readlines()
    runtime = [l for l in lines if RUNTIME.match(l)]
    with tempfile.NamedTemporaryFile("w", suffix=".ks", dir=HERE, delete=False) as tmp:
        tmp.writelines(l for l in lines if not RUNTIME.match(l))
    out = os.path.join(outdir, f"aitheros-{variant}.ks")
    try:
        r = subprocess.run([tool("ksflatten"), "-v", "RHEL9", "-c", tmp.name, "-o", out],
                           cwd=HERE, capture_output=True, text=True)
    finally:
        os.unlink(tmp.name)
    if r.returncode != 0 or not os.path.exists(out):
        report = (r.stdout + r.stderr).replace(tmp.name, f"kickstart/{variant}.ks (with its %includes)")
        sys.exit(f"kickstart/{variant}.ks: ksflatten failed:\n{report.strip()}")
    if runtime:
        with open(out, "a") as f:
            f.write("\n# Written by %pre at install time.\n")
            f.writelines(runtime)
    r = subprocess.run([tool("ksvalidator"), "-v", "RHEL9", out], capture_output=True, text=True)
    report = (r.stdout + r.stderr).replace(f"Checking kickstart file {out}", "").strip()
    if r.returncode != 0 or report:
        sys.exit(f"kickstart/{variant}.ks: ksvalidator -v RHEL9 {out}:\n{report}")
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    for v in sys.argv[2:] or VARIANTS:
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v!r}: {', '.join(VARIANTS)}")
        print(f"kickstart: {build(v, outdir)} (ksvalidator -v RHEL9: no errors)")


if __name__ == "__main__":
    main()
