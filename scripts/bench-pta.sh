#!/usr/bin/env bash
# Cutover's pass-through benchmark: a release build, a throwaway OpenLDAP (scripts/slapd-start.sh,
# quiet log, no password policy) seeded with USERS users, then `cutover bench-pta`: password
# checks straight against the directory (the baseline), then through 1 and 3 agents (separate
# `cutover agent run` processes) via an in-process server. Prints the ratios, p50/p99, per-core
# figures against the reference sizing, and each agent's CPU and memory (docs/PERFORMANCE.md).
# Everything listens on 127.0.0.1 and every loop is bounded.
#
#   usage: scripts/bench-pta.sh [cutover bench-pta options...]
#          e.g. scripts/bench-pta.sh --validations 5000 --concurrency 64 --json /tmp/pta.json
#   environment: USERS (default 200) users bench0..bench<USERS-1>@bench.example, password pw-bench<i>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
USERS="${USERS:-200}"

"$ROOT/scripts/install-deps.sh" >/dev/null
cargo build --release -p cutover

WORK="$(mktemp -d /tmp/cutover-bench-pta.XXXXXX)"
cleanup() {
  "$ROOT/scripts/slapd-stop.sh" "$WORK/slapd" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

BASE="dc=example,dc=test"
{
  for ((i = 0; i < USERS; i++)); do
    printf 'dn: uid=bench%d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: bench%d\ncn: bench%d\nsn: bench%d\nmail: bench%d@bench.example\nuserPassword: pw-bench%d\n\n' \
      "$i" "$BASE" "$i" "$i" "$i" "$i" "$i"
  done
} >"$WORK/users.ldif"

PORT=53890
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
eval "$(SLAPD_LOGLEVEL=none SLAPD_SEED_LDIF="$WORK/users.ldif" "$ROOT/scripts/slapd-start.sh" "$WORK/slapd" "$PORT")"

printf '%s' "sync-pw" >"$WORK/sync-pw"
chmod 600 "$WORK/sync-pw"
cat >"$WORK/directory.toml" <<EOF
url = "$LDAP_URI"
bind_dn = "uid=svc-sync,ou=people,$BASE"
bind_password_file = "$WORK/sync-pw"
base_dn = "ou=people,$BASE"
user_filter = "(&(objectClass=inetOrgPerson)(mail={upn}))"
timeout_secs = 5
EOF

echo "\$ target/release/cutover bench-pta --directory-config <throwaway slapd> --users $USERS $*"
"$ROOT/target/release/cutover" bench-pta --directory-config "$WORK/directory.toml" --users "$USERS" "$@"
