#!/usr/bin/env bash
# `make docs`: the manual (docs/, mdBook) with its reference generated from the code, built
# into target/manual, every link checked (the README's too).
#
#   1. mdBook (pinned) is installed from crates.io into .cache/tools when missing;
#   2. docs/ is staged in target/manual-src and the reference pages written there
#      (scripts/manual_reference.py: aitherctl's help, the D-Bus introspection of a development
#      agentd, the JSON Schemas), so nothing generated is ever committed or out of date;
#   3. mdbook build, then scripts/check_links.py fails on a link to no file or no anchor.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
mdbook_version=0.5.4
tools="$repo/.cache/tools"
mdbook="$tools/bin/mdbook"
bin="${CARGO_TARGET_DIR:-$repo/target}/debug"
target="${CARGO_TARGET_DIR:-$repo/target}"
stage="$target/manual-src"
out="$target/manual"

if [ ! -x "$mdbook" ] || [ "$("$mdbook" --version 2>/dev/null)" != "mdbook v$mdbook_version" ]; then
  echo "docs: installing mdBook $mdbook_version into $tools (once)"
  cargo install --quiet --locked --root "$tools" --version "$mdbook_version" \
    --no-default-features --features search mdbook
fi

rm -rf "$stage" "$out"
mkdir -p "$stage"
cp -R docs/. "$stage/"
python3 scripts/manual_reference.py --out "$stage/reference" \
  --aitherctl "$bin/aitherctl" --agentd "$bin/agentd" --schemas docs/schema
if ! "$mdbook" build "$stage" --dest-dir "$out" > "$target/manual.log" 2>&1; then
  cat "$target/manual.log" >&2
  echo "docs: mdbook build failed" >&2
  exit 1
fi
# mdBook's warnings (a chapter it cannot read, a missing include) fail the build too.
if grep -E 'WARN|ERROR' "$target/manual.log" >&2; then
  echo "docs: mdbook warned (above)" >&2
  exit 1
fi
python3 scripts/check_links.py --html "$out" --markdown README.md
echo "docs: the manual is in $out/index.html"
