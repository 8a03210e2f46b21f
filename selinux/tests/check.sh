#!/usr/bin/env bash
# Policy checks that need no running SELinux:
#  1. build the aitheros module with the distribution's policy development files;
#  2. link it into a complete policy in a temporary store with expand-check=1, so every
#     neverallow in the whole policy is really checked;
#  3. for each module in violations/ (each breaks one neverallow), linking must FAIL;
#  4. every line of assertions.txt is checked with sesearch on the linked policy;
#  5. the golden tailored modules (golden/*.cil) link too, and are removed again.
# Output is TAP; the last line is "N passed, M failed". Enforcing-mode behaviour (EACCES
# and an AVC for each forbidden operation) is checked in the VM test bed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sel="$(dirname "$here")"
pass=0 fail=0 n=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $*"; }

make -s -C "$sel" >/dev/null 2>"$sel/build.log" || { echo "selinux: module build failed:" >&2; cat "$sel/build.log" >&2; exit 1; }
rm -f "$sel/build.log"

store=""
for s in /var/lib/selinux/targeted /var/lib/selinux/default; do
  [ -d "$s/active" ] && { store="$s"; break; }
done
if [ -z "$store" ]; then
  echo "selinux: no policy store under /var/lib/selinux (install selinux-policy-default or -targeted)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/etc/selinux/aither/contexts/files" "$root/var/lib/selinux"
cp -a "$store" "$root/var/lib/selinux/aither"
cat > "$root/etc/selinux/semanage.conf" <<CONF
module-store = direct
expand-check = 1
usepasswd = false
disable-genhomedircon = true
CONF
semod() { semodule -p "$root" -s aither "$@" 2>&1 | grep -v genhomedircon; return "${PIPESTATUS[0]}"; }

echo "# base policy store: $store"
if out="$(semod -i "$sel/aitheros.pp")"; then
  ok "aitheros links into the complete policy with expand-check=1"
else
  not_ok "aitheros links into the complete policy with expand-check=1"; echo "$out" | sed 's/^/# /'
  echo "$pass passed, $fail failed"; exit 1
fi
policy="$(ls "$root"/etc/selinux/aither/policy/policy.* | head -1)"

# Installing $2 (module $1) must fail, and because of a neverallow.
expect_refused() {
  if semod -i "$2" >"$work/$1.out"; then
    not_ok "violation $1 is refused at link time"; semod -r "$1" >/dev/null || true
  elif grep -q "neverallow" "$work/$1.out"; then
    ok "violation $1 is refused at link time (neverallow)"
  else
    not_ok "violation $1 refused, but not by a neverallow"; sed 's/^/# /' "$work/$1.out"
  fi
}
for te in "$here"/violations/*.te; do
  name="$(basename "$te" .te)"
  d="$work/v/$name"; mkdir -p "$d"; cp "$te" "$d/"
  if make -s -C "$d" -f /usr/share/selinux/devel/Makefile "$name.pp" >"$d/log" 2>&1; then
    expect_refused "$name" "$d/$name.pp"
  else
    not_ok "violation $name: does not even build"; sed 's/^/# /' "$d/log"
  fi
done
for cil in "$here"/violations/*.cil; do
  expect_refused "$(basename "$cil" .cil)" "$cil"
done

while read -r kind src tgt cls perm; do
  case "$kind" in ''|\#*) continue ;; esac
  t="$tgt"; [ "$t" = self ] && t="$src"   # sesearch matches "self" rules through the type itself
  rules="$(sesearch -A -s "$src" -t "$t" -c "$cls" -p "$perm" "$policy" 2>&1)"
  uncond="$(echo "$rules" | grep -v '^$' | grep -v ']:' || true)"
  what="$src -> $tgt $cls $perm"
  case "$kind" in
    allow) [ -n "$uncond" ] && ok "allowed: $what" || not_ok "allowed: $what" ;;
    deny)  [ -z "$(echo "$rules" | grep -v '^$')" ] && ok "denied: $what" || { not_ok "denied: $what"; echo "$rules" | sed 's/^/# /'; } ;;
    bool:*) b="${kind#bool:}"
      if [ -z "$uncond" ] && echo "$rules" | grep -q "\[ $b \]:True"; then ok "only with $b: $what"; else not_ok "only with $b: $what"; echo "$rules" | sed 's/^/# /'; fi ;;
    *) not_ok "assertions.txt: unknown kind $kind" ;;
  esac
done < "$here/assertions.txt"

for cil in "$here"/golden/*.cil; do
  [ -f "$cil" ] || continue
  name="$(basename "$cil" .cil)"
  if out="$(semod -i "$cil")"; then
    ok "tailored module $name links with expand-check=1"; semod -r "$name" >/dev/null || true
  else
    not_ok "tailored module $name links with expand-check=1"; echo "$out" | sed 's/^/# /'
  fi
done

echo "1..$n"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
