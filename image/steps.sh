# Shared by the image builders (iso/build.sh, image/build.sh): where things go, the
# prerequisite list, and the steps, printed by --dry-run or run in order. Sourced, not run.
#
# Environment: ROCKY_ISO (the Rocky 9 DVD to start from; default build/Rocky-9-ARCH-dvd.iso),
# AITHER_BUILD (output directory, default build/), AITHER_VENV (the Python venv).

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${AITHER_BUILD:-$repo/build}"
version="$(sed -n 's/^Version: *//p' "$repo/image/aitheros.spec")"
arch="$(uname -m)"
rocky_iso="${ROCKY_ISO:-$out/Rocky-9-$arch-dvd.iso}"
rocky_iso_url="${ROCKY_ISO_URL:-https://download.rockylinux.org/pub/rocky/9/isos/$arch/Rocky-9-latest-$arch-dvd.iso}"
iso="$out/aitheros-$version-$arch.iso"
venv="${AITHER_VENV:-$repo/.venv}"

# --dry-run is the only option; anything else is refused with the usage line.
dry=0
parse_options() {
  local usage="$1"; shift
  for a in "$@"; do
    case "$a" in
      --dry-run) dry=1 ;;
      *) echo "build: unknown argument $a (usage: $usage)" >&2; exit 2 ;;
    esac
  done
}

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (dnf install $2)"); }
# Every builder flattens a kickstart and makes repositories.
need_common() {
  need_cmd rpmbuild rpm-build
  need_cmd dnf dnf
  need_cmd createrepo_c createrepo_c
  [ -x "$venv/bin/ksflatten" ] || command -v ksflatten >/dev/null || missing+=("ksflatten (make deps, or dnf install pykickstart)")
}

steps=()
step() { steps+=("$*"); }

# Print the steps (--dry-run, with what is missing), or refuse listing every missing
# prerequisite, or run them in order.
run_steps() {
  local what="$1" builder="$2"
  if [ "$dry" -eq 1 ]; then
    echo "# $builder $what: the steps"
    local n=0 s
    for s in "${steps[@]}"; do n=$((n + 1)); echo "$n. $s"; done
    if [ "${#missing[@]}" -gt 0 ]; then
      echo "# missing on this host (the build would stop here):"
      printf '#   %s\n' "${missing[@]}"
    fi
    return 0
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "build $what: missing prerequisites:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
  mkdir -p "$out"
  local s
  for s in "${steps[@]}"; do
    echo "+ $s"
    bash -c "$s"
  done
  echo "build $what: done"
}
