#!/usr/bin/env bash
# `make run`: agentd --dev in the foreground. Configuration root ./dev (etc/aither/... there
# overrides the embedded defaults; agents in dev/etc/aither/agents.d). Without a session bus,
# a private one is started for this run and its address printed for aitherctl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/debug"
mkdir -p dev/etc/aither/agents.d dev/etc/aither/units.d
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$PWD/dev/run}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"
if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  command -v dbus-daemon >/dev/null || { echo "run-dev: dbus-daemon is missing (make deps installs it)" >&2; exit 1; }
  socket="$XDG_RUNTIME_DIR/bus"
  rm -f "$socket"
  dbus-daemon --session --address="unix:path=$socket" --nofork --nopidfile 2>/dev/null &
  dbus_pid=$!
  trap 'kill $dbus_pid 2>/dev/null' EXIT
  for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
  export DBUS_SESSION_BUS_ADDRESS="unix:path=$socket"
  echo "run-dev: private session bus; in another shell:"
  echo "  DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS $bin/aitherctl --session status"
fi
ctl="$bin/aitherctl --session"
[ -n "${socket:-}" ] && ctl="DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS $ctl"
cat <<NEXT
run-dev: agentd --dev, configuration root ./dev. Next steps, from another shell:
  - a model: drop a .gguf named as in the catalog into dev/var/lib/aither/models/
    (or: $ctl models pull), then: $ctl reload
  - the OpenAI-compatible gateway, with the key agentd writes to dev/etc/aither/gateway.key:
    curl -H "Authorization: Bearer \$(cat dev/etc/aither/gateway.key)" http://127.0.0.1:8080/v1/models
  - the appliance: $ctl status
NEXT
exec_status=0
$bin/agentd --dev --root "$PWD/dev" || exec_status=$?
exit "$exec_status"
