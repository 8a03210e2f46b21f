#!/usr/bin/env bash
# What a run of the example workflow (docs/examples/workflows/heal-unit.toml) costs on the
# tiny test model: each of its two steps run by aither-agent as agentd runs it, against
# aither-infer (1 thread, the Hermes tool template) on a Unix socket. Prints each step's
# outcome, turns, tokens and seconds, and the runner's peak memory. Random weights: the
# figures are the plumbing's cost, not a real model's.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${CARGO_TARGET_DIR:-$repo/target}/debug"
models="$("${AITHER_VENV:-$repo/.venv}/bin/python" "$repo/tests/models/test_models.py" "$repo/target/tmp/models")"
t="$(mktemp -d)"
trap 'kill "${w:-0}" 2>/dev/null; rm -rf "$t"' EXIT
"$bin/aither-infer" --model "$models/tiny-chat.gguf" --listen "unix:$t/gw.sock" --threads 1 --ctx 8192 \
  --chat-template-file "$repo/infer/tests/templates/hermes.jinja" >/dev/null 2>"$t/worker.log" &
w=$!
for _ in $(seq 600); do
  [ -S "$t/gw.sock" ] && python3 -c 'import socket,sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
sys.exit(0 if b" 200 " in s.recv(4096) else 1)' "$t/gw.sock" 2>/dev/null && break
  sleep 0.1
done
step() { # NAME TOOLS OUTPUTS STEPS TOKENS SECONDS INPUT SYSTEM INSTRUCTIONS
  mkdir -p "$t/$1/inputs"
  echo "infer-qwen: CUDA error: out of memory; the worker exited with status 137" > "$t/$1/inputs/$7"
  cat > "$t/$1/step.json" <<JSON
{"schema_version": 1, "run_id": "heal-unit-1", "workflow": "heal-unit", "step": "$1", "model": "chat",
 "system_prompt": "$8", "instructions": "$9", "tools": $2, "commands": [], "inputs": ["$7"], "outputs": $3,
 "budget": {"steps": $4, "tokens": $5, "seconds": $6, "turn_tokens": 2048}}
JSON
  /usr/bin/time -f "$1: %e s wall, %M KiB peak RSS" "$bin/aither-agent" --workspace "$t/$1" --gateway "$t/gw.sock"
}
step diagnose '["read_file", "list_files", "write_file"]' '["diagnosis.md"]' 8 4000 300 journal-infer-qwen.txt \
  "You are the AitherOS appliance's diagnostician." "Read the unit's journal and the appliance status, then write diagnosis.md."
step propose '["read_file", "propose"]' '[]' 4 2000 120 diagnosis.md \
  "You are the AitherOS appliance's operator." "Read diagnosis.md and propose at most one action (restart, stop, pull_model)."
