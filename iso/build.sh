#!/usr/bin/env bash
# Build the AitherOS installer ISO on a Rocky Linux 9 build host with network access:
# the Rocky 9 DVD with our kickstart embedded (mkksiso) and an offline repository of our RPMs
# and the GPU driver RPMs drivers/drivers.toml names; boots on BIOS and UEFI.
#
#   iso/build.sh [--dry-run]
#
# The disk images (image/build.sh qcow2|cloud) are installed from this ISO. Prerequisites are
# checked first and every missing one is listed; --dry-run prints every step (the commands, in
# order) without running any, and says what is missing. Environment: see image/steps.sh.
set -euo pipefail
source "$(dirname "$0")/../image/steps.sh"
parse_options "iso/build.sh [--dry-run]" "$@"

need_common
need_cmd mkksiso lorax
dnf download --help >/dev/null 2>&1 || missing+=("dnf download (dnf install dnf-plugins-core)")
if [ ! -f "$rocky_iso" ]; then
  need_cmd curl curl
  curl -fsI --max-time 10 "$rocky_iso_url" >/dev/null 2>&1 \
    || missing+=("the Rocky 9 DVD: $rocky_iso is not there and $rocky_iso_url cannot be reached (set ROCKY_ISO)")
fi
grep -qs '^ID="\?rocky\|^ID="\?rhel\|^ID="\?almalinux' /etc/os-release \
  || missing+=("a Rocky Linux 9 (or RHEL 9) build host: the RPMs and driver downloads must match the target")

ks="$repo/target/kickstart/aitheros-iso.ks"
localrepo="$out/iso-extra/aitheros"
step "$venv/bin/python $repo/kickstart/build.py $repo/target/kickstart iso"
step "rm -rf $out/iso-extra && mkdir -p $localrepo"
step "make -C $repo rpm CARGO_PROFILE=release"
step "cp $repo/target/rpm/RPMS/*/*.rpm $localrepo/"
# The GPU driver RPMs drivers.toml names, with their dependencies, from the vendors' repositories.
pkgs="$(grep -E '^(packages|signed|dkms) *=' "$repo/drivers/drivers.toml" | grep -oE '"[^"]+"' | tr -d '"' | sort -u | tr '\n' ' ')"
step "dnf download --resolve --alldeps --destdir $localrepo" \
     "--repofrompath=cuda-rhel9,https://developer.download.nvidia.com/compute/cuda/repos/rhel9/$arch" \
     "--repofrompath=rocm,https://repo.radeon.com/rocm/el9/latest/main" \
     "--setopt=cuda-rhel9.gpgcheck=1 --setopt=rocm.gpgcheck=1 $pkgs"
step "createrepo_c $localrepo"
[ -f "$rocky_iso" ] || step "curl -fL -o $rocky_iso $rocky_iso_url"
# mkksiso embeds the kickstart (inst.ks on the ISO's own label, BIOS and UEFI menus) and
# adds the repository at the medium's root: /run/install/repo/aitheros during the install.
step "mkksiso --ks $ks --add $localrepo -V AitherOS-$version $rocky_iso $iso"
step "sha256sum $iso > $iso.sha256"

run_steps iso iso/build.sh
