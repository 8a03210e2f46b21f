#!/usr/bin/env python3
"""Write the manual's reference pages from what the code defines, so they cannot drift.

    manual_reference.py --out DIR --aitherctl BIN --agentd BIN --schemas DIR

- reference/aitherctl.md: `aitherctl --help` and every subcommand's help, walked from clap's
  own "Commands:" lists.
- reference/dbus.md: the introspection of org.aitheros.Agentd1 as a development agentd on a
  private bus answers it: every method, signal and property with its arguments, and the doc
  comment zbus carries into the introspection data (a member without one is an error).
- reference/schemas.md: every JSON Schema in docs/schema (generated from the Rust types by
  aither-api's tests) as tables of fields, types and descriptions.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

BUS_NAME = "org.aitheros.Agentd1"
OBJECT_PATH = "/org/aitheros/Agentd1"


def fail(msg):
    sys.exit(f"manual_reference: {msg}")


# ---------------------------------------------------------------- aitherctl


def help_text(ctl, words):
    out = subprocess.run([ctl, *words, "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        fail(f"`aitherctl {' '.join(words)} --help` exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout.rstrip() + "\n"


def subcommands(text):
    """The subcommand names of a clap help text's "Commands:" section (not `help`)."""
    names, inside = [], False
    for line in text.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            if not line.startswith("  "):
                break
            m = re.match(r"^  (\S+)", line)
            if m and m.group(1) != "help":
                names.append(m.group(1))
    return names


def aitherctl_page(ctl):
    out = [
        "# aitherctl\n",
        "Generated from `aitherctl --help` and the help of each subcommand (`make docs`).",
        "`--json` and `--session` are accepted by every subcommand.\n",
    ]

    def walk(words):
        text = help_text(ctl, words)
        level = "#" * min(2 + len(words), 6)
        title = "aitherctl " + " ".join(words) if words else "aitherctl"
        out.append(f"{level} {title}\n")
        out.append("```text\n" + text + "```\n")
        for sub in subcommands(text):
            walk([*words, sub])

    walk([])
    return "\n".join(out)


# ---------------------------------------------------------------- D-Bus


def introspect(agentd):
    """The introspection XML of a development agentd on a private session bus."""
    with tempfile.TemporaryDirectory(prefix="aither-docs-") as tmp:
        tmp = Path(tmp)
        socket = tmp / "bus"
        (tmp / "bus.conf").write_text(
            '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
            ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
            f"<busconfig><type>session</type><listen>unix:path={socket}</listen><auth>EXTERNAL</auth>"
            '<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>'
            '<allow receive_sender="*"/></policy></busconfig>\n'
        )
        root = tmp / "root"
        conf = root / "etc/aither/agentd.d"
        conf.mkdir(parents=True)
        # Only the Unix socket: a user's `make run` may hold the gateway's TCP port.
        (conf / "50-docs.toml").write_text('[gateway]\nlisten = ["unix:/run/aither/gateway.sock"]\n')
        (tmp / "xdg").mkdir(mode=0o700)
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=f"unix:path={socket}", XDG_RUNTIME_DIR=str(tmp / "xdg"))
        env.pop("NOTIFY_SOCKET", None)
        procs = []
        try:
            procs.append(
                subprocess.Popen(
                    ["dbus-daemon", f"--config-file={tmp / 'bus.conf'}", "--nofork", "--nopidfile"],
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for(lambda: socket.exists(), "the private dbus-daemon")
            log = open(tmp / "agentd.log", "w")
            procs.append(
                subprocess.Popen([agentd, "--dev", "--root", str(root)], env=env, stdout=log, stderr=subprocess.STDOUT)
            )
            call = [
                "dbus-send", "--session", "--print-reply=literal", f"--dest={BUS_NAME}", OBJECT_PATH,
                "org.freedesktop.DBus.Introspectable.Introspect",
            ]

            def answered():
                if procs[-1].poll() is not None:
                    fail(f"agentd --dev exited {procs[-1].returncode}:\n{(tmp / 'agentd.log').read_text()[-3000:]}")
                r = subprocess.run(call, env=env, capture_output=True, text=True, timeout=10)
                answered.xml = r.stdout if r.returncode == 0 and BUS_NAME in r.stdout else None
                return answered.xml is not None

            wait_for(answered, "agentd --dev on the private bus", secs=60)
            return answered.xml
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()


def wait_for(done, what, secs=10):
    deadline = time.monotonic() + secs
    while not done():
        if time.monotonic() > deadline:
            fail(f"{what} did not come up within {secs} s")
        time.sleep(0.05)


def members(xml):
    """(kind, name, args, doc, extra) for each member of the interface, in its order."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    tree = ET.fromstring(xml, parser=parser)
    iface = next((i for i in tree.iter("interface") if i.get("name") == BUS_NAME), None)
    if iface is None:
        fail(f"the introspection data has no interface {BUS_NAME}")
    out, doc = [], None
    for el in iface:
        if el.tag is ET.Comment:
            doc = " ".join(line.strip() for line in (el.text or "").strip().splitlines())
            continue
        if el.tag not in ("method", "signal", "property"):
            continue
        name = el.get("name")
        # zbus writes a member's doc comment inside its element for methods and signals.
        inner = [c for c in el if c.tag is ET.Comment]
        if inner:
            doc = " ".join(line.strip() for line in (inner[0].text or "").strip().splitlines())
        if not doc:
            fail(f"{BUS_NAME}.{name} has no doc comment (agentd/src/bus.rs): the reference would be empty")
        args = [(a.get("name") or "", a.get("type"), a.get("direction") or "") for a in el if a.tag == "arg"]
        out.append((el.tag, name, args, doc, {"type": el.get("type"), "access": el.get("access")}))
        doc = None
    return out


def code_spans(text):
    """A doc comment's schema file names as links to their reference sections."""
    return re.sub(
        r"\(([a-z-]+)\.schema\.json\)", lambda m: f"([{m.group(1)}](schemas.md#{m.group(1)}))", text
    )


def dbus_page(xml):
    ms = members(xml)
    out = [
        "# The D-Bus API\n",
        f"`{BUS_NAME}` at `{OBJECT_PATH}`, on the system bus (the session bus with `agentd --dev`).",
        "Generated from the interface's introspection data, which carries each member's doc comment",
        "in `agentd/src/bus.rs` (`make docs`). Every method answers with a typed document as JSON text",
        "(`schema_version` 1, the same document `aitherctl --json` prints); a refusal is a D-Bus error",
        "whose message says why. Anyone may read; the members marked *admins* are for root and members",
        "of `aither-admin`, decided from the caller's uid as the bus daemon records it.\n",
        "```sh",
        f"busctl --system introspect {BUS_NAME} {OBJECT_PATH}",
        f"busctl --system call {BUS_NAME} {OBJECT_PATH} {BUS_NAME} Status",
        "```\n",
    ]
    for kind, title in (("method", "Methods"), ("signal", "Signals"), ("property", "Properties")):
        rows = [m for m in ms if m[0] == kind]
        if not rows:
            continue
        out.append(f"## {title}\n")
        out.append("| member | description |")
        out.append("|---|---|")
        for _, name, args, doc, extra in rows:
            if kind == "property":
                sig = f"`{name}` ({extra['type']}, {extra['access']})"
            else:
                ins = ", ".join(f"{t} {n}".strip() for n, t, d in args if d in ("in", ""))
                outs = ", ".join(t for n, t, d in args if d == "out")
                sig = f"`{name}({ins})" + (f" → {outs}`" if outs else "`")
            desc = code_spans(doc).replace("|", "\\|")
            out.append(f"| {sig} | {desc} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- JSON Schema


def anchor(*parts):
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def type_of(schema, page):
    """A field's type in words, with links to the definitions it refers to."""
    if isinstance(schema, bool):
        return "any JSON value" if schema else "nothing"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor(page, name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kinds = [type_of(s, page) for s in schema[key]]
            return " or ".join(dict.fromkeys(kinds))
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    t = schema.get("type")
    if isinstance(t, list):
        return " or ".join(
            type_of(dict(schema, type=x), page) for x in t
        )
    if t == "array":
        items = schema.get("items")
        return f"array of {type_of(items, page)}" if isinstance(items, dict) else "array"
    if t == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of string to {type_of(schema['additionalProperties'], page)}"
    if t:
        fmt = schema.get("format")
        return f"{t} ({fmt})" if fmt else t
    return "any"


def one_line(text):
    return " ".join((text or "").split()).replace("|", "\\|")


def object_table(schema, page):
    props = schema.get("properties", {})
    if not props:
        return []
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, s in props.items():
        described = one_line(s.get("description")) if isinstance(s, dict) else ""
        rows.append(f"| `{name}` | {type_of(s, page)} | {'yes' if name in required else ''} | {described} |")
    return rows + [""]


def variants(schema, page):
    """An enum of strings, or a tagged union's variants, in a list."""
    out = []
    for key in ("oneOf", "anyOf"):
        for v in schema.get(key, []):
            if not isinstance(v, dict):
                out.append(f"- {type_of(v, page)}")
                continue
            label = None
            if "const" in v:
                label = f"`{json.dumps(v['const'])}`"
            elif "enum" in v:
                label = ", ".join(f"`{json.dumps(x)}`" for x in v["enum"])
            elif v.get("type") == "object":
                tags = [f"`{k}` = `{json.dumps(p['const'])}`" for k, p in v.get("properties", {}).items() if isinstance(p, dict) and "const" in p]
                label = "object" + (f" with {', '.join(tags)}" if tags else "")
                out.append(f"- {label}: {one_line(v.get('description'))}")
                out.extend("  " + r for r in object_table(v, page))
                continue
            else:
                label = type_of(v, page)
            out.append(f"- {label}" + (f": {one_line(v.get('description'))}" if v.get("description") else ""))
    if "enum" in schema:
        out.append("One of " + ", ".join(f"`{json.dumps(x)}`" for x in schema["enum"]) + ".")
    return out + ([""] if out else [])


def schemas_page(schema_dir):
    files = sorted(Path(schema_dir).glob("*.schema.json"))
    if not files:
        fail(f"no JSON Schemas in {schema_dir}")
    out = [
        "# Typed documents (JSON Schema)\n",
        "Every document that crosses a process boundary (the profile, the plan, agentd's D-Bus",
        "replies, a step's `step.json` and `result.json`, the audit file) is a Rust type in `aither-api`",
        "with a `schema_version`. Its JSON Schema is generated from that type (`cargo test -p aither-api`",
        "fails when a file in `docs/schema/` drifts; `AITHER_BLESS=1` rewrites them), and this page is",
        "generated from the schemas (`make docs`).\n",
        "| document | file |",
        "|---|---|",
    ]
    for f in files:
        page = f.name.removesuffix(".schema.json")
        title = json.loads(f.read_text()).get("title", page)
        out.append(f"| [{title}](#{page}) | [`{f.name}`](../schema/{f.name}) |")
    out.append("")
    for f in files:
        page = f.name.removesuffix(".schema.json")
        s = json.loads(f.read_text())
        out.append(f'<a id="{page}"></a>\n')
        out.append(f"## {s.get('title', page)} (`{f.name}`)\n")
        if s.get("description"):
            out.append(one_line(s["description"]) + "\n")
        out.extend(object_table(s, page))
        out.extend(variants(s, page))
        for name, d in s.get("$defs", {}).items():
            out.append(f'<a id="{anchor(page, name)}"></a>\n')
            out.append(f"### {name}\n")
            if d.get("description"):
                out.append(one_line(d["description"]) + "\n")
            out.extend(object_table(d, page))
            out.extend(variants(d, page))
            if not d.get("properties") and not any(k in d for k in ("oneOf", "anyOf", "enum")):
                out.append(f"A {type_of(d, page)}.\n")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--aitherctl", required=True)
    ap.add_argument("--agentd", required=True)
    ap.add_argument("--schemas", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "aitherctl.md").write_text(aitherctl_page(a.aitherctl))
    (out / "dbus.md").write_text(dbus_page(introspect(a.agentd)))
    (out / "schemas.md").write_text(schemas_page(a.schemas))


if __name__ == "__main__":
    main()
