#!/usr/bin/env bash
# Install the VM acceptance checks into an image tree (DESTDIR), enabled at boot, so that
# `tests/vm/run.sh --image DISK` can boot any image built from it (a Rocky qcow2 from a build
# host included). The agent checks must be labelled agentd_exec_t in the image: after this,
# relabel the tree (setfiles) and then set that one label, as build-image.sh does, or add
#   /usr/libexec/aither/vmtest/agent-checks  --  system_u:object_r:agentd_exec_t:s0
# to the image's file contexts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: install.sh DESTDIR}"
vt="$dest/usr/libexec/aither/vmtest"
install -d "$vt" "$dest/usr/lib/systemd/system" "$dest/etc/systemd/system/multi-user.target.wants"
install -m 0755 "$here/run-checks" "$here/agent-checks" "$vt/"
install -m 0644 "$here/cockpit-stage" "$vt/"
cc -static -O2 -o "$vt/aither-vmprobe" "$here/probe.c"
install -m 0644 "$here/aither-vmtest.service" "$dest/usr/lib/systemd/system/"
ln -sf /usr/lib/systemd/system/aither-vmtest.service "$dest/etc/systemd/system/multi-user.target.wants/"
