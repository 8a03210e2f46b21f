#!/usr/bin/env bash
# Install what the build and the tests need, when it is missing.
#
# Idempotent and quick when everything is present: it asks the package
# database (dpkg / rpm) before touching the network, and keeps a stamp of the
# Python requirements so the venv is only rebuilt when they change.
#
# Supports Debian 12 (apt) and Rocky 9 / Fedora (dnf). Run as root, or with
# sudo available; in CI it runs non-interactively.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${AITHER_VENV:-$here/.venv}"
requirements="$here/scripts/requirements.txt"
requirements_nodeps="$here/scripts/requirements-nodeps.txt"

# Package names per distribution family. Keep the two lists in step.
apt_pkgs=(
  cmake clang libclang-dev pkg-config
  libselinux1-dev selinux-policy-dev selinux-policy-default checkpolicy semodule-utils setools
  systemd dbus qemu-system-x86 qemu-user qemu-utils debootstrap e2fsprogs rpm
  python3-venv python3-rpm tmux s6 supervisor pci.ids cpio file binutils git make
  chromium chromium-driver  # the Cockpit page's browser checks (Rocky: from EPEL, not listed below)
)
dnf_pkgs=(
  cmake clang clang-devel pkgconf-pkg-config
  libselinux-devel selinux-policy-devel selinux-policy-targeted checkpolicy policycoreutils setools-console
  systemd dbus-daemon qemu-kvm qemu-img debootstrap e2fsprogs rpm-build
  python3 python3-rpm tmux supervisor hwdata cpio file binutils git make
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
elif command -v dnf >/dev/null 2>&1; then
  missing=()
  for p in "${dnf_pkgs[@]}"; do
    rpm -q --whatprovides "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    # strict=0: a package this release does not carry (debootstrap and supervisor live in
    # EPEL on Rocky; s6 is not packaged for EL at all) must not block the others. What is
    # still missing afterwards is listed, and the checks that need it say so when they run.
    as_root dnf install -y -q --setopt=strict=0 "${missing[@]}"
    still=()
    for p in "${missing[@]}"; do rpm -q --whatprovides "$p" >/dev/null 2>&1 || still+=("$p"); done
    [ "${#still[@]}" -eq 0 ] || echo "deps: not available from the enabled repositories: ${still[*]}" >&2
  fi
else
  echo "deps: neither apt-get nor dnf found; install the packages listed in scripts/deps.sh by hand" >&2
  exit 1
fi

# Python tools in a git-ignored venv, rebuilt only when requirements change.
stamp="$venv/.requirements.sha256"
want="$(cat "$requirements" "$requirements_nodeps" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "deps: creating python venv in $venv"
  # Prefer the distribution's python3 (it has ensurepip through python3-venv).
  py=/usr/bin/python3
  [ -x "$py" ] || py="$(command -v python3)"
  # System site packages: rpmlint needs the distribution's rpm bindings (python3-rpm).
  "$py" -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -r "$requirements"
  "$venv/bin/pip" install -q --no-deps -r "$requirements_nodeps"
  echo "$want" > "$stamp"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
