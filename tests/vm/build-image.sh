#!/usr/bin/env bash
# Build the VM test image: Debian 12 (debootstrap, cached) with systemd, dbus, auditd and the
# reference policy, plus `make install` of this project, the aitheros module in the guest's
# policy store, the acceptance checks, and every file labelled on the host (setfiles), so
# the guest boots enforcing without a relabel.
#
# Usage: build-image.sh OUTDIR     → OUTDIR/disk.raw, OUTDIR/vmlinuz, OUTDIR/initrd.img
# Environment: AITHER_VM_CACHE (default .cache/vm), AITHER_VM_MIRROR, AITHER_VM_PROFILE
# (cargo profile of the installed binaries: dev, the default, or release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:?usage: build-image.sh OUTDIR}"
cache="${AITHER_VM_CACHE:-$repo/.cache/vm}"
mirror="${AITHER_VM_MIRROR:-http://deb.debian.org/debian}"
profile="${AITHER_VM_PROFILE:-dev}"
packages="systemd,systemd-sysv,dbus,udev,kmod,linux-image-amd64,selinux-basics,selinux-policy-default,auditd,policycoreutils,selinux-utils,procps,iproute2,setools,libgomp1,git,make,dbus-user-session,cockpit-ws,cockpit-bridge,cockpit-system"
key="$(echo "bookworm $packages 1" | sha256sum | cut -c1-12)"
base="$cache/base-$key.tar"
mkdir -p "$cache" "$out"

if [ ! -f "$base" ]; then
  echo "vm: debootstrap of the base system into the cache (about 2 minutes, once)"
  tmp="$cache/base-tmp-$$"
  rm -rf "$tmp"
  debootstrap --variant=minbase --include="$packages" bookworm "$tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; echo "vm: debootstrap failed (log: $cache/debootstrap.log)" >&2; exit 1; }
  tar -C "$tmp" -cf "$base.tmp" .
  mv "$base.tmp" "$base"
  rm -rf "$tmp"
fi

root="$out/root"
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$base"

# The appliance, through the one install path.
make -C "$repo" --no-print-directory install DESTDIR="$root" CARGO_PROFILE="$profile" > "$out/install.log" 2>&1 \
  || { tail -n 30 "$out/install.log" >&2; echo "vm: make install failed" >&2; exit 1; }

# The acceptance checks, and the appliance's boot units enabled.
bash "$here/guest/install.sh" "$root"
vt="$root/usr/libexec/aither/vmtest"
# aither-init's cgroup tests, which need a delegated cgroup v2 subtree: built here, run there.
cgtest="$(cd "$repo" && cargo test -q --locked -p aither-init --test cgroup --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cgroup":
        print(m["executable"])')"
[ -x "$cgtest" ] || { echo "vm: cannot build aither-init's cgroup tests" >&2; exit 1; }
install -m 0755 "$cgtest" "$vt/init-cgroup-tests"
# The workflow scenario: a scripted stand-in for the model (behind the gateway's cloud
# fallback), the script it answers with, the workflow and the unit that fails.
install -m 0755 "$repo/target/debug/aither-scripted-model" "$vt/aither-scripted-model"
install -m 0644 "$here/guest/workflow/packs-script.json" "$here/guest/workflow/packs-checks" "$here/guest/workflow/browser-script.json" \
  "$here/guest/workflow/vm-flaky.toml" "$here/guest/workflow/cloud.toml" "$vt/"
ln -sf /usr/lib/systemd/system/aither-hwprofile.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /usr/lib/systemd/system/agentd.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /usr/lib/systemd/system/aither-drivers.service "$root/etc/systemd/system/multi-user.target.wants/"

# Two agents for agentd to run: each says hello on its output and writes in its workspace.
install -d "$root/etc/aither/agents.d"
for a in vm-a vm-b; do
  cat > "$root/etc/aither/agents.d/$a.toml" <<AGENT
name = "$a"
description = "VM test agent"
command = ["/bin/sh", "-c", "echo hello from \$AITHER_AGENT; echo note > \$AITHER_WORKSPACE/note; exec sleep infinity"]
[resources]
memory_max = "256M"
pids_max = 32
AGENT
done

# An agent allowed to use the gateway: it asks the local model once through the socket.
cat > "$root/etc/aither/agents.d/vm-gw.toml" <<'AGENT'
name = "vm-gw"
description = "VM test agent that talks to the gateway"
command = ["/bin/sh", "-c", "echo \"context $(tr -d '\\0' < /proc/self/attr/current)\"; /usr/libexec/aither/vmtest/aither-vmprobe gateway /run/aither/gateway.sock > $AITHER_WORKSPACE/gateway.out 2>&1; cat $AITHER_WORKSPACE/gateway.out; exec sleep infinity"]
[permissions]
network = "gateway"
AGENT

# What the checks look for: a secret in root's home, a model, agentd's config, the workspaces.
echo "root's secret" > "$root/root/secret"
install -d "$root/var/lib/aither/models" "$root/var/lib/aither/agents" "$root/etc/aither"
echo "GGUF not really" > "$root/var/lib/aither/models/test.gguf"
# A real (small) chat model in the place of the cpu-only plan's chat model, for the gateway.
models="$("${AITHER_VENV:-$repo/.venv}/bin/python" "$repo/tests/models/test_models.py" "$repo/target/tmp/models")" \
  || { echo "vm: cannot make the test models (make deps makes the venv)" >&2; exit 1; }
install -m 0644 "$models/tiny-chat.gguf" "$root/var/lib/aither/models/Phi-3.5-mini-instruct-Q4_K_M.gguf"
printf "# agentd configuration: room for both test agents whatever the preset\n[agents]\nmax_concurrent = 4\n" > "$root/etc/aither/agentd.toml"

# First boot, headless: the answers cloud-init user-data would write. aither-firstboot.service
# applies them before agentd starts, then removes the file (it holds a password).
cat > "$root/etc/aither/answers.toml" <<'ANSWERS'
schema_version = 1
[system]
hostname = "aither-vm"
timezone = "Europe/Berlin"
[admin]
user = "vmadmin"
password = "correct horse battery"
ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ3cjPzZ9xWVH2Hj3vX1n+Pw0d6ulOVmmEGNbAMlKPC vm@test"]
[workflows]
enable = ["devops", "code-review"]
ANSWERS
chmod 0600 "$root/etc/aither/answers.toml"

# The machine. Its one network interface is QEMU's user network, restricted: nothing beyond
# the host's forward of Cockpit's port (run.sh), for the browser checks.
echo aither-vmtest > "$root/etc/hostname"
install -d "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nAddress=10.0.2.15/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' > "$root/etc/systemd/network/10-vmtest.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/"
install -d "$root/etc/systemd/system/sockets.target.wants"
ln -sf /lib/systemd/system/cockpit.socket "$root/etc/systemd/system/sockets.target.wants/"
echo "/dev/vda / ext4 rw,relatime 0 1" > "$root/etc/fstab"
printf 'SELINUX=enforcing\nSELINUXTYPE=default\n' > "$root/etc/selinux/config"

# The policy module in the guest's store, then labels from the guest's file contexts.
semodule -p "$root" -s default -i "$repo/selinux/aitheros.pp" 2>&1 | grep -v genhomedircon || true
semodule -p "$root" -s default -l | grep -qx aitheros || { echo "vm: the aitheros module did not install" >&2; exit 1; }
setfiles -r "$root" "$root/etc/selinux/default/contexts/files/file_contexts" "$root" >/dev/null
# The agent checks run as agentd_t: label them as agentd's executable.
python3 -c 'import os,sys
for f in sys.argv[1:]: os.setxattr(f, "security.selinux", b"system_u:object_r:agentd_exec_t:s0\0")' "$vt/agent-checks" "$vt/init-cgroup-tests"

cp "$(ls "$root"/boot/vmlinuz-* | sort | tail -n 1)" "$out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort | tail -n 1)" "$out/initrd.img"
rm -f "$out/disk.raw"
mkfs.ext4 -q -F -L aither-root -d "$root" "$out/disk.raw" 3G
rm -rf "$root"
echo "vm: image ready in $out"
