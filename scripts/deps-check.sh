#!/usr/bin/env bash
# The honest check of scripts/deps.sh: `make run`'s dependency step in a minimal Debian 12 root
# where the build's packages are absent (debootstrap --variant=minbase, cached under
# target/deps-root), entered with chroot:
#
#   1. a user who may not install (no sudo rights): deps.sh stops before building, exit 1, with
#      one message naming every missing package and the command that installs them, and
#      installs nothing;
#   2. a user with passwordless sudo: it installs them through sudo, then the build's tools
#      (cmake, a C++ compiler, libclang, pkg-config, dbus-daemon) are checked and found;
#   3. root, with one package removed again: it installs that one;
#   4. root, everything present: it costs nothing (apt-get is not run at all).
#
# Needs root (chroot, mount) and the Debian mirror (AITHER_DEPS_MIRROR). The downloaded .debs
# are kept beside the root, so a later run downloads only the package lists.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${CARGO_TARGET_DIR:-$repo/target}/deps-root"
mirror="${AITHER_DEPS_MIRROR:-http://deb.debian.org/debian}"
base="$cache/base-bookworm-minbase-sudo.tar"
root="$cache/root"

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -n -E bash "$0" "$@"; fi
  echo "deps-check: SKIPPED: needs root (chroot into a Debian root); run make test as root or with passwordless sudo" >&2
  exit 0
fi
command -v debootstrap >/dev/null || { echo "deps-check: debootstrap is missing (make deps installs it)" >&2; exit 1; }

mkdir -p "$cache/archives"
if [ ! -f "$base" ]; then
  echo "deps-check: debootstrap of a minimal Debian 12 root into $cache (once, about a minute)"
  tmp="$cache/base-tmp-$$"
  rm -rf "$tmp"
  debootstrap --variant=minbase --include=sudo bookworm "$tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; echo "deps-check: debootstrap failed (log: $cache/debootstrap.log)" >&2; exit 1; }
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  tar -C "$tmp" -cf "$base.tmp" .
  mv "$base.tmp" "$base"
  rm -rf "$tmp"
fi

cleanup() {
  if [ -d "$root/proc" ] && mountpoint -q "$root/proc"; then umount "$root/proc"; fi
  # What was downloaded is kept for the next run.
  if compgen -G "$root/var/cache/apt/archives/*.deb" >/dev/null; then
    cp -n "$root"/var/cache/apt/archives/*.deb "$cache/archives/" 2>/dev/null || true
  fi
}
trap cleanup EXIT

rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo "127.0.0.1 localhost $(hostname)" > "$root/etc/hosts"
compgen -G "$cache/archives/*.deb" >/dev/null && cp "$cache"/archives/*.deb "$root/var/cache/apt/archives/"
mount -t proc proc "$root/proc"
# The Rust toolchain comes from rustup, not from the distribution: a stand-in answers for it.
printf '#!/bin/sh\necho "cargo 1.95.0 (stand-in)"\n' > "$root/usr/local/bin/cargo"
chmod 0755 "$root/usr/local/bin/cargo"
mkdir -p "$root/src/scripts"
cp "$repo/scripts/deps.sh" "$root/src/scripts/"
chroot "$root" useradd -m -u 4001 nosudo
chroot "$root" useradd -m -u 4002 builder
echo "builder ALL=(ALL) NOPASSWD: ALL" > "$root/etc/sudoers.d/builder"
chmod 0440 "$root/etc/sudoers.d/builder"

fails=0
fail() { echo "deps-check: FAIL: $*" >&2; fails=$((fails + 1)); }
pass() { echo "deps-check: ok: $*"; }
installed() { chroot "$root" dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# deps.sh as a user of the root, in a login-like environment; its output in $log.
as() {
  local user="$1"
  shift
  log="$cache/last.log"
  chroot --userspec="$user:$user" "$root" env -i HOME="/home/$user" PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash /src/scripts/deps.sh "$@" > "$log" 2>&1
}
run_pkgs=(cmake clang libclang-dev g++ pkg-config make dbus pci.ids)

for p in "${run_pkgs[@]}"; do
  if installed "$p" && [ "$p" != make ]; then fail "the base root already has $p: the check would prove nothing"; fi
done

# 1. No rights: one message, every package named, the command given, nothing installed.
status=0
as nosudo run || status=$?
if [ "$status" -ne 1 ]; then fail "a user without sudo rights: exit $status, not 1"; fi
msg="$(cat "$log")"
listed=" $(sed -n 's/.*not installed: //p' "$log" | head -n1) "
for p in cmake clang libclang-dev g++ pkg-config dbus pci.ids; do
  [[ "$listed" == *" $p "* ]] || fail "the message does not name $p: $msg"
done
grep -q "install them with: sudo apt-get install" "$log" || fail "the message gives no command: $msg"
[ "$(grep -c '^deps:' "$log")" -le 2 ] || fail "more than one message: $msg"
installed cmake && fail "a user without sudo rights installed cmake"
[ "$fails" -eq 0 ] && pass "a user without sudo rights is told what to install and how (exit 1): $(head -n1 "$log")"

# 2. Passwordless sudo: installed through sudo, then the tools are found.
status=0
as builder run || status=$?
if [ "$status" -ne 0 ]; then fail "a user with passwordless sudo: exit $status: $(cat "$log")"; fi
for p in "${run_pkgs[@]}"; do installed "$p" || fail "$p not installed through sudo"; done
grep -q "deps: make run: installing" "$log" || fail "no word of what it installs: $(cat "$log")"
[ "$fails" -eq 0 ] && pass "a user with passwordless sudo: installed through sudo, the build's tools found"

# 3. Root, one package missing again: that one is installed.
chroot "$root" dpkg -r pci.ids > /dev/null
status=0
as root run || status=$?
[ "$status" -eq 0 ] || fail "root: exit $status: $(cat "$log")"
grep -q "installing pci.ids$" "$log" || fail "root did not install exactly pci.ids: $(cat "$log")"
installed pci.ids || fail "root: pci.ids not installed"
[ "$fails" -eq 0 ] && pass "root installs what is missing, only that"

# 4. Everything present: apt-get is not run (a stand-in earlier on PATH would record it).
cat > "$root/usr/local/bin/apt-get" <<'SHIM'
#!/bin/sh
echo "apt-get $*" >> /tmp/apt-get-called
exec /usr/bin/apt-get "$@"
SHIM
chmod 0755 "$root/usr/local/bin/apt-get"
rm -f "$root/tmp/apt-get-called"
status=0
chroot "$root" env -i HOME=/root PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash /src/scripts/deps.sh run > "$cache/last.log" 2>&1 || status=$?
[ "$status" -eq 0 ] || fail "everything present: exit $status: $(cat "$cache/last.log")"
[ -s "$cache/last.log" ] && fail "everything present, yet it printed: $(cat "$cache/last.log")"
[ -e "$root/tmp/apt-get-called" ] && fail "everything present, yet apt-get ran: $(cat "$root/tmp/apt-get-called")"
[ "$fails" -eq 0 ] && pass "everything present: nothing printed, apt-get not run"

# The build set alone asks for no more than the build needs.
status=0
as nosudo build || status=$?
[ "$status" -eq 0 ] || fail "deps.sh build with everything present: exit $status: $(cat "$log")"

if [ "$fails" -ne 0 ]; then
  echo "deps-check: $fails check(s) failed" >&2
  exit 1
fi
echo "deps-check: all passed"
