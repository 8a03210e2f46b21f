#!/usr/bin/env bash
# Build the AitherOS images on a Rocky Linux 9 build host with network access.
#
#   image/build.sh iso   [--dry-run]   installer ISO: the Rocky 9 DVD with our kickstart embedded
#                                      (mkksiso) and an offline repository of our RPMs and the
#                                      GPU driver RPMs; boots on BIOS and UEFI
#   image/build.sh qcow2 [--dry-run]   VM image: that ISO installed with the qcow2 kickstart
#                                      (livemedia-creator)
#   image/build.sh cloud [--dry-run]   cloud image (qcow2 and raw): the cloud kickstart, cloud-init
#
# Environment: ROCKY_ISO (the Rocky 9 DVD to start from; default build/Rocky-9-x86_64-dvd.iso,
# downloaded from ROCKY_ISO_URL when missing), AITHER_BUILD (output directory, default build/).
# Prerequisites are checked first and every missing one is listed; --dry-run prints every
# step (the commands, in order) without running any, and says what is missing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
what="${1:-}"; shift || true
dry=0
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    *) echo "build: unknown argument $a (usage: image/build.sh iso|qcow2|cloud [--dry-run])" >&2; exit 2 ;;
  esac
done
case "$what" in iso|qcow2|cloud) ;; *) echo "usage: image/build.sh iso|qcow2|cloud [--dry-run]" >&2; exit 2 ;; esac

out="${AITHER_BUILD:-$repo/build}"
version="$(sed -n 's/^Version: *//p' "$repo/image/aitheros.spec")"
arch="$(uname -m)"
rocky_iso="${ROCKY_ISO:-$out/Rocky-9-$arch-dvd.iso}"
rocky_iso_url="${ROCKY_ISO_URL:-https://download.rockylinux.org/pub/rocky/9/isos/$arch/Rocky-9-latest-$arch-dvd.iso}"
iso="$out/aitheros-$version-$arch.iso"
venv="${AITHER_VENV:-$repo/.venv}"

# --- prerequisites ---------------------------------------------------------------------------
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (dnf install $2)"); }
need_cmd rpmbuild rpm-build
need_cmd dnf dnf
need_cmd createrepo_c createrepo_c
[ -x "$venv/bin/ksflatten" ] || command -v ksflatten >/dev/null || missing+=("ksflatten (make deps, or dnf install pykickstart)")
case "$what" in
  iso)
    need_cmd mkksiso lorax
    dnf download --help >/dev/null 2>&1 || missing+=("dnf download (dnf install dnf-plugins-core)")
    if [ ! -f "$rocky_iso" ]; then
      need_cmd curl curl
      curl -fsI --max-time 10 "$rocky_iso_url" >/dev/null 2>&1 \
        || missing+=("the Rocky 9 DVD: $rocky_iso is not there and $rocky_iso_url cannot be reached (set ROCKY_ISO)")
    fi
    grep -qs '^ID="\?rocky\|^ID="\?rhel\|^ID="\?almalinux' /etc/os-release \
      || missing+=("a Rocky Linux 9 (or RHEL 9) build host: the RPMs and driver downloads must match the target")
    ;;
  qcow2|cloud)
    need_cmd livemedia-creator lorax-lmc-virt
    need_cmd qemu-img qemu-img
    [ -e /dev/kvm ] || missing+=("/dev/kvm (livemedia-creator installs in a VM; without KVM it takes hours)")
    [ -f "$iso" ] || missing+=("$iso: run \`make iso\` first (the image is installed from it)")
    ;;
esac

# --- steps -----------------------------------------------------------------------------------
steps=()
step() { steps+=("$*"); }
ks="$repo/target/kickstart/aitheros-$what.ks"
step "$venv/bin/python $repo/kickstart/build.py $repo/target/kickstart $what"
case "$what" in
  iso)
    localrepo="$out/iso-extra/aitheros"
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
    ;;
  qcow2|cloud)
    name="aitheros-$what-$version-$arch"
    step "rm -rf $out/lmc-$what"
    step "livemedia-creator --make-disk --ks $ks --iso $iso --image-name $name.qcow2 --qcow2" \
         "--resultdir $out/lmc-$what --ram 4096 --vcpus 2 --timeout 240 --project AitherOS --releasever 9"
    step "mv $out/lmc-$what/$name.qcow2 $out/$name.qcow2"
    if [ "$what" = cloud ]; then
      step "qemu-img convert -f qcow2 -O raw $out/$name.qcow2 $out/$name.raw"
    fi
    step "sha256sum $out/$name.* > $out/$name.sha256"
    ;;
esac

if [ "$dry" -eq 1 ]; then
  echo "# image/build.sh $what: the steps"
  n=0
  for s in "${steps[@]}"; do n=$((n + 1)); echo "$n. $s"; done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "# missing on this host (the build would stop here):"
    printf '#   %s\n' "${missing[@]}"
  fi
  exit 0
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "build $what: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
mkdir -p "$out"
for s in "${steps[@]}"; do
  echo "+ $s"
  bash -c "$s"
done
echo "build $what: done"
