#!/usr/bin/env bash
# Boot the appliance in QEMU and run the acceptance checks; fail on any failed check or on
# a timeout, printing what the guest said.
#
# Usage: run.sh [--image DISK] [--timeout SECONDS]
#   without --image: build the Debian test image (build-image.sh) and boot its kernel;
#   with --image: boot that disk (qcow2 or raw, e.g. a Rocky image from a build host) with
#   its own bootloader, as a snapshot; it must carry the checks: install them into the image
#   tree with `tests/vm/guest/install.sh DESTDIR` before it is built.
# Environment: AITHER_VM_ACCEL=kvm to use KVM (default TCG: nested KVM does not work on the
# CI machines), AITHER_VM_MEMORY (MiB, default 2048), AITHER_VM_CPU (QEMU CPU model, default
# Nehalem: x86-64-v2, the lowest CPU Rocky 9 runs on).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/target/vm"
image="" timeout_s=900
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
started=$(date +%s)
mkdir -p "$out"
accel="${AITHER_VM_ACCEL:-tcg}"
# The browser checks: Cockpit's 9090 forwarded to a free port on the host's loopback (the
# guest's network is restricted to that), and a third serial port the host writes "done" to.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
rm -f "$out/browser.in" "$out/browser.out" && mkfifo "$out/browser.in" "$out/browser.out"
args=(-accel "$accel" -m "${AITHER_VM_MEMORY:-2048}" -smp 2 -display none -no-reboot -monitor none
      -nic "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:$port-:9090"
      -serial "file:$out/console.log" -serial "file:$out/results.tap" -serial "pipe:$out/browser")
# Rocky 9's floor, x86-64-v2 (SSE4.2, no AVX): the inference worker must run there too.
args+=(-cpu "${AITHER_VM_CPU:-Nehalem}")
if [ -z "$image" ]; then
  bash "$here/build-image.sh" "$out"
  args+=(-drive "file=$out/disk.raw,if=virtio,format=raw"
         -kernel "$out/vmlinuz" -initrd "$out/initrd.img"
         -append "root=/dev/vda rw console=ttyS0 security=selinux selinux=1 enforcing=1 audit=1 panic=-1 systemd.show_status=0 quiet")
else
  args+=(-drive "file=$image,if=virtio,snapshot=on")
fi
built=$(date +%s)
: > "$out/results.tap"
echo "vm: booting ($accel), checks report on the second serial port"
browser_dir="$repo/target/cockpit"
rm -rf "$browser_dir" && mkdir -p "$browser_dir"
set +e
timeout "$timeout_s" qemu-system-x86_64 "${args[@]}" &
qemu=$!
# Drain what the guest writes on the pipe; when it says it is ready, drive the page.
cat "$out/browser.out" > /dev/null &
drain=$!
(
  until grep -q '^# browser: ready' "$out/results.tap" 2>/dev/null; do
    kill -0 "$qemu" 2>/dev/null || exit 0
    sleep 1
  done
  "${AITHER_VENV:-$repo/.venv}/bin/python" "$here/browser.py" --port "$port" --out "$browser_dir" \
    > "$browser_dir/browser.tap" 2>"$browser_dir/browser.log"
  echo "$?" > "$browser_dir/browser.rc"
  echo done > "$out/browser.in"
) &
driver=$!
wait "$qemu"
rc=$?
kill "$driver" "$drain" 2>/dev/null
wait 2>/dev/null
set -e
finished=$(date +%s)
# The serial line discipline turns \n into \r\n.
tr -d '\r' < "$out/results.tap" > "$out/results.clean" && mv "$out/results.clean" "$out/results.tap"
cat "$out/results.tap"
verdict=0
if [ -f "$browser_dir/browser.tap" ]; then
  echo "vm: --- the Cockpit page in Chromium (screenshots in $browser_dir) ---"
  cat "$browser_dir/browser.tap"
  if [ "$(cat "$browser_dir/browser.rc" 2>/dev/null)" != 0 ]; then
    echo "vm: the browser checks failed" >&2; tail -n 20 "$browser_dir/browser.log" >&2; verdict=1
  fi
elif grep -q '^# browser: ready' "$out/results.tap"; then
  echo "vm: the browser checks did not run" >&2; verdict=1
fi
if [ "$rc" -eq 124 ]; then
  echo "vm: timed out after ${timeout_s}s" >&2; verdict=1
elif ! grep -qE '^[0-9]+ passed, [0-9]+ failed$' "$out/results.tap"; then
  echo "vm: the checks did not finish (qemu exit $rc)" >&2; verdict=1
elif grep -q '^not ok' "$out/results.tap"; then
  verdict=1
fi
if [ "$verdict" -ne 0 ]; then
  echo "vm: --- last lines of the console ---" >&2
  tail -n 60 "$out/console.log" >&2
fi
echo "vm-test: image $((built - started)) s, boot and checks $((finished - built)) s, total $((finished - started)) s"
exit "$verdict"
