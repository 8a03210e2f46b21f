#!/usr/bin/env bash
# Build the AitherOS disk images on a Rocky Linux 9 build host with KVM, from the installer
# ISO (iso/build.sh, `make iso`):
#
#   image/build.sh qcow2 [--dry-run]   VM image: the ISO installed with the qcow2 kickstart
#                                      (livemedia-creator)
#   image/build.sh cloud [--dry-run]   cloud image (qcow2 and raw): the cloud kickstart, cloud-init
#
# Prerequisites are checked first and every missing one is listed; --dry-run prints every
# step (the commands, in order) without running any, and says what is missing. Environment:
# see image/steps.sh.
set -euo pipefail
source "$(dirname "$0")/steps.sh"
what="${1:-}"; shift || true
case "$what" in qcow2|cloud) ;; *) echo "usage: image/build.sh qcow2|cloud [--dry-run] (the ISO: iso/build.sh)" >&2; exit 2 ;; esac
parse_options "image/build.sh qcow2|cloud [--dry-run]" "$@"

need_common
need_cmd livemedia-creator lorax-lmc-virt
need_cmd qemu-img qemu-img
[ -e /dev/kvm ] || missing+=("/dev/kvm (livemedia-creator installs in a VM; without KVM it takes hours)")
[ -f "$iso" ] || missing+=("$iso: run \`make iso\` first (the image is installed from it)")

ks="$repo/target/kickstart/aitheros-$what.ks"
name="aitheros-$what-$version-$arch"
step "$venv/bin/python $repo/kickstart/build.py $repo/target/kickstart $what"
step "rm -rf $out/lmc-$what"
step "livemedia-creator --make-disk --ks $ks --iso $iso --image-name $name.qcow2 --qcow2" \
     "--resultdir $out/lmc-$what --ram 4096 --vcpus 2 --timeout 240 --project AitherOS --releasever 9"
step "mv $out/lmc-$what/$name.qcow2 $out/$name.qcow2"
if [ "$what" = cloud ]; then
  step "qemu-img convert -f qcow2 -O raw $out/$name.qcow2 $out/$name.raw"
fi
step "sha256sum $out/$name.* > $out/$name.sha256"

run_steps "$what" image/build.sh
