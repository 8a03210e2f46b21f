#!/usr/bin/env bash
# Install what a make target needs, when it is missing, then check the build's tools are usable.
#
#   deps.sh build [--check]   what cargo's build scripts need: llama.cpp is built from source
#                             (cmake, clang and libclang for bindgen, a C++ compiler, pkg-config)
#   deps.sh run   [--check]   build, plus what `make run` starts (dbus-daemon, the PCI ID names)
#   deps.sh test  [--check]   run, plus every check's tools (SELinux policy tools, QEMU and
#                             debootstrap for the VM test bed, Chromium for the console's checks,
#                             rpm, s6/supervisord for the bench) and the Python venv
#
# Already-installed packages cost nothing: the package database (dpkg / rpm) is asked first and
# the package manager runs only for what is missing. As root it installs; as a user with
# passwordless sudo it uses sudo; otherwise it installs nothing and stops with one message naming
# the packages and the command that installs them. With --check it never installs.
#
# Supports Debian 12 (apt) and Rocky 9 / Fedora (dnf). Elsewhere it checks the tools themselves
# and names what is missing. Exit status: 0 ready, 1 something missing, 2 usage.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${AITHER_VENV:-$here/.venv}"
requirements="$here/scripts/requirements.txt"
requirements_nodeps="$here/scripts/requirements-nodeps.txt"

usage() { echo "usage: deps.sh build|run|test [--check]" >&2; exit 2; }
set_name="${1:-}"
check_only=0
case "${2:-}" in "") ;; --check) check_only=1 ;; *) usage ;; esac
[ "$#" -le 2 ] || usage

# Package names per set and distribution family; each set adds to the one before it.
# Keep the apt and dnf columns in step.
apt_build=(cmake clang libclang-dev g++ pkg-config make)
dnf_build=(cmake clang clang-devel gcc-c++ pkgconf-pkg-config make)
apt_run=(dbus pci.ids)
dnf_run=(dbus-daemon hwdata)
apt_test=(
  libselinux1-dev selinux-policy-dev selinux-policy-default checkpolicy semodule-utils setools
  systemd qemu-system-x86 qemu-user qemu-utils debootstrap e2fsprogs rpm
  python3-venv python3-rpm tmux s6 supervisor cpio file binutils git
  chromium chromium-driver # the Cockpit page's browser checks (Rocky: from EPEL, not listed below)
)
dnf_test=(
  libselinux-devel selinux-policy-devel selinux-policy-targeted checkpolicy policycoreutils setools-console
  systemd qemu-kvm qemu-img debootstrap e2fsprogs rpm-build
  python3 python3-rpm tmux supervisor cpio file binutils git
)

case "$set_name" in
  build) target="make build"; apt_pkgs=("${apt_build[@]}"); dnf_pkgs=("${dnf_build[@]}") ;;
  run) target="make run"; apt_pkgs=("${apt_build[@]}" "${apt_run[@]}"); dnf_pkgs=("${dnf_build[@]}" "${dnf_run[@]}") ;;
  test)
    target="make test"
    apt_pkgs=("${apt_build[@]}" "${apt_run[@]}" "${apt_test[@]}")
    dnf_pkgs=("${dnf_build[@]}" "${dnf_run[@]}" "${dnf_test[@]}")
    ;;
  *) usage ;;
esac

# How to run the package manager: directly as root, through passwordless sudo, or not at all.
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  as_root=(none)
fi

# Install $@ with the package manager command in $install (a string), or say how to.
install_missing() {
  local install="$1"
  shift
  if [ "$check_only" -eq 1 ] || [ "${as_root[0]:-}" = none ]; then
    local why="this user cannot install packages (not root, no passwordless sudo)"
    [ "$check_only" -eq 1 ] && why="--check installs nothing"
    echo "deps: $target needs packages that are not installed: $*" >&2
    echo "deps: install them with: sudo $install $*   ($why)" >&2
    exit 1
  fi
  echo "deps: $target: installing $*"
}

if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    install_missing "apt-get install -y --no-install-recommends" "${missing[@]}"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
elif command -v dnf >/dev/null 2>&1; then
  missing=()
  for p in "${dnf_pkgs[@]}"; do
    rpm -q --whatprovides "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    install_missing "dnf install -y" "${missing[@]}"
    # strict=0: a package this release does not carry (debootstrap and supervisor live in
    # EPEL on Rocky; s6 is not packaged for EL at all) must not block the others. What is
    # still missing afterwards is listed, and the checks that need it say so when they run.
    "${as_root[@]}" dnf install -y -q --setopt=strict=0 "${missing[@]}"
    still=()
    for p in "${missing[@]}"; do rpm -q --whatprovides "$p" >/dev/null 2>&1 || still+=("$p"); done
    [ "${#still[@]}" -eq 0 ] || echo "deps: not available from the enabled repositories: ${still[*]}" >&2
  fi
else
  echo "deps: neither apt-get nor dnf found: checking the tools themselves" >&2
fi

# The build's tools, checked whatever installed them, so that a missing one is named here and
# never reported by cargo as a build script's panic.
problems=()
command -v cargo >/dev/null 2>&1 || problems+=("cargo (install a Rust toolchain with rustup)")
command -v cmake >/dev/null 2>&1 || problems+=("cmake (package cmake)")
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 \
  || problems+=("a C++ compiler (package g++ or gcc-c++)")
command -v pkg-config >/dev/null 2>&1 || command -v pkgconf >/dev/null 2>&1 || problems+=("pkg-config")
# bindgen loads libclang at build time: where LIBCLANG_PATH says, or where clang-sys looks.
libclang_found() {
  local d
  for d in ${LIBCLANG_PATH:-} /usr/lib/llvm-*/lib /usr/lib64 /usr/lib /usr/lib/x86_64-linux-gnu /usr/local/lib; do
    compgen -G "$d/libclang*.so*" >/dev/null 2>&1 && return 0
  done
  return 1
}
libclang_found || problems+=("libclang (package libclang-dev or clang-devel; or set LIBCLANG_PATH)")
if [ "$set_name" != build ]; then
  command -v dbus-daemon >/dev/null 2>&1 || problems+=("dbus-daemon (package dbus or dbus-daemon)")
fi
if [ "${#problems[@]}" -gt 0 ]; then
  printf 'deps: %s cannot build: missing %s\n' "$target" "$(IFS=';'; echo "${problems[*]}" | sed 's/;/, /g')" >&2
  exit 1
fi

# Python tools in a git-ignored venv (the tests' models and clients), rebuilt only when the
# requirements change.
if [ "$set_name" = test ]; then
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
fi
