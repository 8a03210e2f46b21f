#!/usr/bin/env bash
# `make eval` and `make eval-quick`: the eval suites (aither-eval) on a real model, through an
# appliance's own path: agentd in development mode whose catalog holds the test models
# (SmolLM2-135M-Instruct as the chat model, all-MiniLM-L6-v2 for embeddings, eval/catalog.toml),
# the cpu-only preset pinned (its chat quantizations widened to the test model's Q4_1), the
# models pulled into its model directory with `aitherctl models pull --from` (checked against
# the catalog's SHA-256), then `aitherctl eval` through the gateway's TCP listener with its key.
#
#   scripts/eval.sh [aitherctl eval arguments...]     e.g. --quick --seeds 1, or devops tools
#
# The report: target/eval/report.json (and the table on stdout); the runs' workspaces are
# kept in target/eval/work; agentd's log in target/eval/agentd.log.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
# AITHER_EVAL_BIN: another build's agentd, aitherctl and aither-infer (with its ggml/), for a before/after.
bin="${AITHER_EVAL_BIN:-$target/debug}"
out="${AITHER_EVAL_OUT:-$target/eval}"
venv="${AITHER_VENV:-$repo/.venv}"

models="$("$venv/bin/python" tests/models/test_models.py "$target/tmp/models")"
models="$(cd "$models" && pwd)"
root="$out/root"
rm -rf "$root" "$out/report.json"
mkdir -p "$root/usr/share/aither/presets" "$root/usr/share/aither/catalog" "$root/etc/aither/agentd.d" "$out/xdg"
chmod 0700 "$out/xdg"
cp plan/presets/*.toml "$root/usr/share/aither/presets/"
sed -i 's/^chat = { context = 4096, quants = \["Q4_K_M"\]/chat = { context = 4096, quants = ["Q4_K_M", "Q4_1"]/' \
  "$root/usr/share/aither/presets/cpu-only.toml"
grep -q '"Q4_1"' "$root/usr/share/aither/presets/cpu-only.toml" || { echo "eval: cannot widen cpu-only's quantizations" >&2; exit 1; }
sed "s|@MODELS@|$models|g" eval/catalog.toml > "$root/usr/share/aither/catalog/eval.toml"
echo 'preset = "cpu-only"' > "$root/etc/aither/appliance.toml"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$root/etc/aither/agentd.d/50-eval.toml" <<EOF
[gateway]
listen = ["127.0.0.1:$port", "unix:/run/aither/gateway.sock"]
# The eval's runs come one after another: the workers stay up between them.
keep_alive_seconds = 3600
EOF

# A private session bus, agentd on it; both stopped however this script ends.
bus="$out/xdg/bus"
rm -f "$bus"
cat > "$out/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path=$bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy></busconfig>
EOF
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
dbus-daemon --config-file="$out/bus.conf" --nofork --nopidfile 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -S "$bus" ] && break; sleep 0.05; done
export DBUS_SESSION_BUS_ADDRESS="unix:path=$bus" XDG_RUNTIME_DIR="$out/xdg"
unset NOTIFY_SOCKET
"$bin/agentd" --dev --root "$root" > "$out/agentd.log" 2>&1 &
pids+=($!)
ctl=("$bin/aitherctl" --session)
for _ in $(seq 200); do "${ctl[@]}" status > /dev/null 2>&1 && break; sleep 0.1; done
"${ctl[@]}" status > /dev/null || { tail -n 30 "$out/agentd.log" >&2; echo "eval: agentd did not come up" >&2; exit 1; }
"${ctl[@]}" models pull --from "$models" > "$out/pull.log" 2>&1 \
  || { cat "$out/pull.log" >&2; echo "eval: the models were not pulled" >&2; exit 1; }
"${ctl[@]}" models list
"${ctl[@]}" eval --work-dir "$out/work" --output "$out/report.json" "$@"
echo "eval: the report is $out/report.json"
