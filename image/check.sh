#!/usr/bin/env bash
# What CI can check of the images without a Rocky 9 build host (the ISO builder in iso/, the
# disk images here): the kickstart variants
# flatten and pass `ksvalidator -v RHEL9`; each builder lists every missing prerequisite and
# refuses to start without them; --dry-run prints every step. Prints TAP-style lines.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${AITHER_VENV:-$repo/.venv}"
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; shift; printf '# %s\n' "$@"; }
check() { local what="$1"; shift; if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what" "$out"; fi; }

check "the kickstart variants flatten and pass ksvalidator -v RHEL9" "$venv/bin/python" "$repo/kickstart/build.py" "$repo/target/kickstart"
ks="$repo/target/kickstart"
check "every variant: SELinux enforcing, root locked, firewall on, the CIS level 1 profile" sh -c \
  "for v in iso qcow2 cloud; do f=$ks/aitheros-\$v.ks; grep -q '^selinux --enforcing' \$f && grep -q '^rootpw --lock' \$f && grep -q '^firewall --enabled' \$f && grep -q 'content_profile_cis_server_l1' \$f || { echo \$v; exit 1; }; done"
check "every variant: BIOS boot and EFI partitions, LVM with the CIS file systems" sh -c \
  "for v in iso qcow2 cloud; do f=$ks/aitheros-\$v.ks; grep -q 'biosboot' \$f && grep -q '/boot/efi' \$f && for m in /var /var/log /var/log/audit /var/tmp /tmp /home; do grep -q \"^logvol \$m \" \$f || { echo \"\$v: \$m\"; exit 1; }; done; done"
check "the iso asks for the disk in %pre and includes its answer" sh -c \
  "grep -q 'aither.disk=' $ks/aitheros-iso.ks && tail -n 1 $ks/aitheros-iso.ks | grep -qx '%include /tmp/aither-disk.ks'"
check "the cloud image has cloud-init, growpart and no console wait" sh -c \
  "grep -qx cloud-init $ks/aitheros-cloud.ks && grep -qx cloud-utils-growpart $ks/aitheros-cloud.ks && grep -q 'default_user' $ks/aitheros-cloud.ks"
check "the GPU driver repositories are defined but disabled" sh -c \
  "grep -A4 '^\[cuda-rhel9-x86_64\]' $ks/aitheros-iso.ks | grep -qx 'enabled=0' && grep -A4 '^\[rocm\]' $ks/aitheros-iso.ks | grep -qx 'enabled=0'"
# A broken fragment is refused, naming the variant and the line.
broken="$(mktemp -d)"; cp -r "$repo/kickstart/." "$broken/"; echo "selinx --enforcing" >> "$broken/fragments/base.ks"
out="$("$venv/bin/python" "$broken/build.py" "$broken/out" qcow2 2>&1)"; rc=$?
rm -rf "$broken"
if [ "$rc" -ne 0 ] && echo "$out" | grep -q "kickstart/qcow2.ks" && echo "$out" | grep -q "Unknown command: selinx"; then
  ok "a kickstart error names the variant and the command"
else
  not_ok "a kickstart error names the variant and the command" "$out"
fi
for what in iso qcow2 cloud; do
  case "$what" in
    iso) out="$(bash "$repo/iso/build.sh" --dry-run 2>&1)"; want="mkksiso --ks" ;;
    *) out="$(bash "$repo/image/build.sh" "$what" --dry-run 2>&1)"; want="livemedia-creator --make-disk --ks" ;;
  esac
  if echo "$out" | grep -q "^[0-9]*\. .*$want" && echo "$out" | grep -q "kickstart/build.py"; then
    ok "make $what --dry-run prints every step"
  else
    not_ok "make $what --dry-run prints every step" "$out"
  fi
done
if command -v mkksiso >/dev/null && command -v dnf >/dev/null; then
  echo "# skipped: the refusal without prerequisites (this host has mkksiso and dnf)"
else
  out="$(bash "$repo/iso/build.sh" 2>&1)"; rc=$?
  if [ "$rc" -eq 1 ] && echo "$out" | grep -q "missing prerequisites" && echo "$out" | grep -q "mkksiso (dnf install lorax)"; then
    ok "make iso without its prerequisites lists them all and stops"
  else
    not_ok "make iso without its prerequisites lists them all and stops" "$out"
  fi
fi
echo "1..$n"
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
