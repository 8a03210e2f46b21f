#!/usr/bin/env bash
# Build the AitherOS RPMs from this tree (rpmbuild --build-in-place), check that every binary
# runs on Rocky Linux 9 (the highest glibc, libstdc++ and libgomp symbol versions it needs),
# and run rpmlint on the packages (any error fails).
#
# Usage: image/build-rpm.sh [CARGO_PROFILE]     (release by default; `make test` uses dev)
# Output: target/rpm/RPMS/<arch>/*.rpm
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
profile="${1:-release}"
topdir="$repo/target/rpm"
venv="${AITHER_VENV:-$repo/.venv}"

missing=()
for t in rpmbuild rpm2cpio cpio objdump; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -x "$venv/bin/rpmlint" ] || command -v rpmlint >/dev/null || missing+=("rpmlint (make deps)")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "rpm: missing: ${missing[*]} (Rocky/Fedora: dnf install rpm-build cpio binutils; Debian: apt install rpm cpio binutils)" >&2
  exit 1
fi

args=(-bb --build-in-place --define "_topdir $topdir" --define "cargo_profile $profile")
# The debug build's CPU variants are the ones its tests built (a release build: all of them).
[ "$profile" = dev ] && args+=(--define "ggml_cpu_variants default")
# A host whose rpm has no systemd and SELinux macros (Debian) gets the fallback definitions.
if [ "$(rpm --eval '%{?systemd_post:defined}')" != defined ]; then
  args+=(--load "$repo/image/macros.fallback")
fi
# rpmbuild would run %build in a clean environment: keep cargo and the Python venv reachable.
rm -rf "$topdir/RPMS"
mkdir -p "$topdir"
(cd "$repo" && rpmbuild "${args[@]}" --nodeps image/aitheros.spec) > "$topdir/build.log" 2>&1 \
  || { tail -n 40 "$topdir/build.log" >&2; echo "rpm: rpmbuild failed (log: $topdir/build.log)" >&2; exit 1; }
mapfile -t rpms < <(find "$topdir/RPMS" -name '*.rpm' | sort)
[ "${#rpms[@]}" -gt 0 ] || { echo "rpm: rpmbuild made no package" >&2; exit 1; }

# Rocky Linux 9: glibc 2.34, GCC 11's libstdc++ (GLIBCXX_3.4.29, CXXABI_1.3.13), libgomp GOMP_5.0.
limit() { case "$1" in GLIBC) echo 2.34 ;; GLIBCXX) echo 3.4.29 ;; CXXABI) echo 1.3.13 ;; GOMP) echo 5.0 ;; esac; }
newer() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$1" ] && [ "$1" != "$2" ]; }
unpacked="$topdir/unpacked"
rm -rf "$unpacked"; mkdir -p "$unpacked"
for r in "${rpms[@]}"; do (cd "$unpacked" && rpm2cpio "$r" | cpio -idm --quiet); done
bad=0
while IFS= read -r bin; do
  file -b "$bin" 2>/dev/null | grep -q ELF || continue
  for lib in GLIBC GLIBCXX CXXABI GOMP; do
    need="$(objdump -T "$bin" | { grep -o "${lib}_[0-9.]*" || true; } | sed "s/^${lib}_//" | sort -V | tail -n 1)"
    [ -n "$need" ] || continue
    if newer "$need" "$(limit "$lib")"; then
      echo "rpm: ${bin#"$unpacked"} needs ${lib}_$need; Rocky Linux 9 has ${lib}_$(limit "$lib") at most" >&2
      bad=1
    else
      echo "rpm: ${bin#"$unpacked"}: ${lib}_$need (Rocky 9: up to $(limit "$lib"))"
    fi
  done
done < <(find "$unpacked" -type f -perm -u+x)
[ "$bad" -eq 0 ] || exit 1

lint="$venv/bin/rpmlint"; [ -x "$lint" ] || lint=rpmlint
if ! "$lint" --config "$repo/image/rpmlint.toml" "${rpms[@]}" > "$topdir/rpmlint.log" 2>&1; then
  cat "$topdir/rpmlint.log" >&2
  echo "rpm: rpmlint reported errors" >&2
  exit 1
fi
tail -n 1 "$topdir/rpmlint.log"
printf 'rpm: %s\n' "${rpms[@]#"$repo/"}"
