#!/usr/bin/env bash
# Directory sync benchmark: a generated OpenLDAP directory of USERS users and GROUPS groups,
# a throwaway `cutover serve` (SQLite), then `cutover sync run --once` twice: the first run is
# the full import and export, the second a delta run after 1,000 changes. Reports the times as
# ratios against a plain paged `ldapsearch` of the same entries and attributes, measured in the
# same run (see docs/PERFORMANCE.md, "Directory sync").
#
#   usage: scripts/bench-sync.sh [USERS] [GROUPS]       (defaults 100000 5000)
#          scripts/bench-sync.sh 2000 100               (a quick check, well under a minute)
#
# Everything listens on 127.0.0.1, every wait is bounded, and the directory, the server and the
# temporary folder are removed on exit, failure included (KEEP=1 keeps the folder for a look).
#
# Environment:
#   CHANGES=N        entries changed before the delta run (default 1000, at most USERS)
#   SKIP_BUILD=1     use target/release/cutover as it is
#   KEEP=1           keep the work folder (LDIF, logs, sync.toml, outputs)
#   BENCH_TIMEOUT=S  limit for each sync run, in seconds (default 3600)
#
# Needs: python3, slapd, ldap-utils, and GNU time (/usr/bin/time; installed with apt-get when
# missing and this runs as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

die() { printf '[bench-sync] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[bench-sync] %s\n' "$*" >&2; }

NUSERS="${1:-100000}"
NGROUPS="${2:-5000}"
CHANGES="${CHANGES:-1000}"
RUN_TIMEOUT="${BENCH_TIMEOUT:-3600}"
for v in "$NUSERS" "$NGROUPS" "$CHANGES" "$RUN_TIMEOUT"; do
  case "$v" in '' | *[!0-9]*) die "usage: $0 [USERS] [GROUPS]  (positive numbers; got '$v')" ;; esac
done
[ "$NUSERS" -ge 2 ] && [ "$NUSERS" -le 999999 ] || die "USERS must be 2..999999"
[ "$NGROUPS" -ge 1 ] && [ "$NGROUPS" -le 99999 ] || die "GROUPS must be 1..99999"
[ "$CHANGES" -le "$NUSERS" ] || CHANGES="$NUSERS"

# --- tools ------------------------------------------------------------------------------
command -v python3 >/dev/null 2>&1 || die "python3 not found"
for t in ldapsearch ldapmodify; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found: install ldap-utils (scripts/install-deps.sh)"
done
GTIME=/usr/bin/time
if [ ! -x "$GTIME" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing GNU time (apt-get install time)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null || die "apt-get install time failed"
  fi
  [ -x "$GTIME" ] || die "/usr/bin/time (GNU time) not found: apt-get install time"
fi

if [ "${SKIP_BUILD:-}" != 1 ]; then
  log "cargo build --release -p cutover"
  cargo build --release -q -p cutover
fi
CUTOVER="$ROOT/target/release/cutover"
[ -x "$CUTOVER" ] || die "$CUTOVER not found (build it, or unset SKIP_BUILD)"

# --- work folder and cleanup ------------------------------------------------------------
WORK="$(mktemp -d /tmp/cutover-bench-sync.XXXXXX)"
SLAPD_STATE="$WORK/slapd"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  "$ROOT/scripts/slapd-stop.sh" "$SLAPD_STATE" >/dev/null 2>&1 || true
  if [ "${KEEP:-}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
free_port() {
  local p="$1" i
  for i in $(seq 1 200); do
    port_busy "$p" || { echo "$p"; return 0; }
    p=$((p + 1))
  done
  die "no free port on 127.0.0.1 from $1 to $p"
}
now_ns() { date +%s%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b-a)/1e9}'; }

BASE="dc=example,dc=test"
PEOPLE="ou=people,$BASE"
GROUPS_OU="ou=groups,$BASE"

# --- 1. the directory -------------------------------------------------------------------
# Every generated entry carries its own createTimestamp/modifyTimestamp, spread over the year
# before yesterday (slapadd keeps given operational attributes): the directory looks like a
# long-lived one, so the delta run's overlap window (10 minutes before the watermark) covers
# only the entries changed below. (With one bulk-load timestamp on every entry, the first
# delta run would re-read the whole directory.)
log "generating $NUSERS users and $NGROUPS groups"
t0=$(now_ns)
python3 - "$NUSERS" "$NGROUPS" "$PEOPLE" "$GROUPS_OU" >"$WORK/directory.ldif" <<'PY'
import base64, hashlib, os, random, sys, time
n_users, n_groups, people, groups = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rnd = random.Random(20261122)
# Timestamps spread over a year, ending a day ago (see above).
t_end = time.time() - 86400
span = 365 * 86400
def stamp(k, n):
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t_end - span + span * k / n))
out = sys.stdout
w = out.write
def ssha(pw):
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(pw + salt).digest() + salt).decode()
for i in range(1, n_users + 1):
    uid = f"u{i:06d}"
    w(f"dn: uid={uid},{people}\n")
    w("objectClass: inetOrgPerson\n")
    w(f"uid: {uid}\ncn: User {i:06d}\nsn: {i:06d}\ngivenName: User\n")
    w(f"mail: {uid}@example.test\n")
    w(f"departmentNumber: D{rnd.randrange(1, 201):03d}\n")
    # ~90 % have a manager with a smaller index: no cycles.
    if i > 1 and rnd.random() < 0.9:
        w(f"manager: uid=u{rnd.randrange(1, i):06d},{people}\n")
    w(f"userPassword: {ssha(f'pw-{uid}'.encode())}\n")
    ts = stamp(i, n_users)
    w(f"createTimestamp: {ts}\nmodifyTimestamp: {ts}\n\n")
# Members: ~20 per group on average (1..39, uniform), at least one, distinct.
for g in range(1, n_groups + 1):
    k = min(n_users, rnd.randint(1, 39))
    members = rnd.sample(range(1, n_users + 1), k)
    w(f"dn: cn=g{g:05d},{groups}\n")
    w("objectClass: groupOfNames\n")
    w(f"cn: g{g:05d}\ndescription: Benchmark group {g}\n")
    for m in members:
        w(f"member: uid=u{m:06d},{people}\n")
    ts = stamp(g, n_groups)
    w(f"createTimestamp: {ts}\nmodifyTimestamp: {ts}\n\n")
PY
log "LDIF: $(du -h "$WORK/directory.ldif" | cut -f1) in $(elapsed "$t0" "$(now_ns)") s"
MEMBER_VALUES=$(grep -c '^member: ' "$WORK/directory.ldif" || true)

LDAP_PORT=$(free_port 38900)
log "starting slapd on 127.0.0.1:$LDAP_PORT (offline load with slapadd)"
t0=$(now_ns)
eval "$(SLAPD_SEED_LDIF="$WORK/directory.ldif" SLAPD_LOGLEVEL=none SLAPD_START_TIMEOUT=120 \
  "$ROOT/scripts/slapd-start.sh" "$SLAPD_STATE" "$LDAP_PORT" "$BASE")"
LOAD_S=$(elapsed "$t0" "$(now_ns)")
SYNC_DN="uid=svc-sync,$PEOPLE"
printf 'sync-pw' >"$WORK/ldap-password"  # no newline: ldapsearch -y sends the file as it is
chmod 600 "$WORK/ldap-password"

# --- 2. Cutover and the sync server's configuration -------------------------------------
HTTP_PORT=$(free_port 38800)
DATA="$WORK/cutover"
mkdir -p "$DATA"
log "starting cutover serve on 127.0.0.1:$HTTP_PORT"
RUST_LOG="${RUST_LOG:-warn}" "$CUTOVER" serve --data-dir "$DATA" --listen "127.0.0.1:$HTTP_PORT" \
  >"$WORK/serve.out" 2>"$WORK/serve.err" </dev/null &
SERVER_PID=$!
for _ in $(seq 1 300); do
  grep -q "is listening on" "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$WORK/serve.err" >&2; die "cutover serve exited during start-up"; }
  sleep 0.1
done
grep -q "is listening on" "$WORK/serve.out" || { tail -n 30 "$WORK/serve.err" >&2; die "cutover serve did not start within 30 s"; }
[ -s "$DATA/admin-credentials" ] || die "cutover serve wrote no $DATA/admin-credentials"
ISSUER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["issuer"])' "$DATA/admin-credentials")

admin() { "$CUTOVER" admin --data-dir "$DATA" "$@"; }
admin domains create example.test >/dev/null || die "could not create the domain example.test"
admin --output json apps create bench-sync --grant client_credentials --app-role Directory.Sync \
  >"$WORK/app.json" || die "could not create the sync application"
python3 - "$WORK/app.json" "$WORK/client-id" "$WORK/client-secret" <<'PY'
import json, os, sys
app = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(app["clientId"])
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, (app["clientSecret"] + "\n").encode())
os.close(fd)
PY
rm -f "$WORK/app.json"

USER_FILTER='(&(objectClass=inetOrgPerson)(!(uid=svc-sync)))'
GROUP_FILTER='(objectClass=groupOfNames)'
cat >"$WORK/sync.toml" <<EOF
name = "bench"
delete_threshold = 500

[cutover]
url = "$ISSUER"
client_id = "$(cat "$WORK/client-id")"
client_secret_file = "client-secret"

[ldap]
url = "$LDAP_URI"
bind_dn = "$SYNC_DN"
bind_password_file = "ldap-password"
timeout_secs = 120
page_size = 1000

[ldap.users]
base_dn = "$PEOPLE"
filter = "$USER_FILTER"

[ldap.groups]
base_dn = "$GROUPS_OU"
filter = "$GROUP_FILTER"
EOF

# --- 3. baseline: a plain paged read of the same entries and attributes -------------------
# The attributes `cutover sync` asks for with the default rules and password hash sync on.
USER_ATTRS="cn departmentNumber mail manager uid userAccountControl userPassword sambaNTPassword entryUUID modifyTimestamp"
GROUP_ATTRS="cn description member uniqueMember memberUid entryUUID modifyTimestamp"
plain_read() {
  ldapsearch -x -LLL -o ldif-wrap=no -H "$LDAP_URI" -D "$SYNC_DN" -y "$WORK/ldap-password" \
    -E pr=1000/noprompt -b "$PEOPLE" "$USER_FILTER" $USER_ATTRS >/dev/null
  ldapsearch -x -LLL -o ldif-wrap=no -H "$LDAP_URI" -D "$SYNC_DN" -y "$WORK/ldap-password" \
    -E pr=1000/noprompt -b "$GROUPS_OU" "$GROUP_FILTER" $GROUP_ATTRS >/dev/null
}
# Best of two (the first also warms slapd's caches, which the sync then finds warm too).
BASE_S=""
for _ in 1 2; do
  t0=$(now_ns)
  plain_read || die "the baseline ldapsearch failed"
  s=$(elapsed "$t0" "$(now_ns)")
  if [ -z "$BASE_S" ] || awk -v a="$s" -v b="$BASE_S" 'BEGIN{exit !(a<b)}'; then BASE_S="$s"; fi
done
SEEN=$(ldapsearch -x -LLL -H "$LDAP_URI" -D "$SYNC_DN" -y "$WORK/ldap-password" -E pr=1000/noprompt \
  -b "$PEOPLE" "$USER_FILTER" 1.1 | grep -c '^dn: ' || true)
[ "$SEEN" = "$NUSERS" ] || die "the directory holds $SEEN users, expected $NUSERS"
log "baseline: plain paged ldapsearch of $NUSERS users + $NGROUPS groups in $BASE_S s"

# --- 4./5. the sync runs ------------------------------------------------------------------
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
run_sync() { # NAME [run options...]: time one `cutover sync run --once`; sets RUN_S, RUN_RSS_KIB, RUN_CPU, RUN_SERVER_CPU
  local name="$1" t0 rc=0 server_cpu0
  shift
  server_cpu0=$(cpu_s "$SERVER_PID")
  t0=$(now_ns)
  (cd "$WORK" && timeout "$RUN_TIMEOUT" "$GTIME" -v -o "$WORK/time-$name.txt" \
    "$CUTOVER" sync --config "$WORK/sync.toml" run --once "$@" \
    >"$WORK/sync-$name.out" 2>"$WORK/sync-$name.err") || rc=$?
  RUN_S=$(elapsed "$t0" "$(now_ns)")
  RUN_RSS_KIB=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$WORK/time-$name.txt" 2>/dev/null || true)
  RUN_CPU=$(awk -F': ' '/User time|System time/ { t += $2 } END { printf "%.1f", t }' "$WORK/time-$name.txt" 2>/dev/null || echo "?")
  RUN_SERVER_CPU=$(awk -v a="$server_cpu0" -v b="$(cpu_s "$SERVER_PID")" 'BEGIN { printf "%.1f", b - a }')
  sed 's/^/    /' "$WORK/sync-$name.out" >&2
  if [ "$rc" != 0 ] || ! grep -q ': Success in ' "$WORK/sync-$name.out"; then
    tail -n 30 "$WORK/sync-$name.err" >&2
    die "the $name sync run failed (exit status $rc; output above)"
  fi
}

log "full sync run (import of every entry, export of everything)"
run_sync full
FULL_S="$RUN_S"
FULL_RSS_KIB="$RUN_RSS_KIB"
FULL_CPU="$RUN_CPU"
FULL_SERVER_CPU="$RUN_SERVER_CPU"
grep -q 'sync Full run' "$WORK/sync-full.out" || die "the first run was not a full run"

# One LDIF, one ldapmodify: a new cn (display name) on CHANGES users spread over the directory.
python3 - "$NUSERS" "$CHANGES" "$PEOPLE" >"$WORK/changes.ldif" <<'PY'
import sys
n, k, people = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
step = n / k
for j in range(k):
    i = 1 + int(j * step)
    sys.stdout.write(f"dn: uid=u{i:06d},{people}\nchangetype: modify\nreplace: cn\ncn: Renamed User {i:06d}\n\n")
PY
# The delta run's watermark is a whole second: make sure the changes land after it.
sleep 1
log "applying $CHANGES changes with one ldapmodify"
t0=$(now_ns)
ldapmodify -x -H "$LDAP_URI" -D "$LDAP_ADMIN_DN" -w "$LDAP_ADMIN_PW" -f "$WORK/changes.ldif" >/dev/null ||
  die "ldapmodify failed"
MOD_S=$(elapsed "$t0" "$(now_ns)")

log "delta sync run ($CHANGES changed users)"
run_sync delta
DELTA_S="$RUN_S"
DELTA_RSS_KIB="$RUN_RSS_KIB"
DELTA_CPU="$RUN_CPU"
DELTA_SERVER_CPU="$RUN_SERVER_CPU"
grep -q 'sync Delta run' "$WORK/sync-delta.out" || die "the second run was not a delta run"
DELTA_UPDATES=$(sed -n 's/.*  updates \([0-9]*\) .*/\1/p' "$WORK/sync-delta.out" | head -n 1)
DELTA_IMPORTED=$(sed -n 's/.*imported \([0-9]*\) .*/\1/p' "$WORK/sync-delta.out" | head -n 1)

SERVER_HWM_KIB=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
SERVER_RSS_KIB=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
DB_SIZE=$(du -sh "$DATA" 2>/dev/null | cut -f1)

# --- 6. report ----------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN{ if (k ~ /^[0-9]+$/) printf "%.1f", k/1024; else printf "?" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else printf "?" }'; }
per_sec() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.0f", n/s; else printf "?" }'; }
cat <<EOF

Cutover directory sync benchmark — $(nproc) cores, OpenLDAP $(/usr/sbin/slapd -VV 2>&1 | sed -n 's/.*slapd \([0-9][^ ]*\).*/\1/p' | head -n 1), SQLite, page size 1000
entries              $NUSERS users, $NGROUPS groups ($MEMBER_VALUES member values), {SSHA} passwords
directory load       ${LOAD_S} s (slapadd, offline)
baseline             plain paged ldapsearch, same entries and attributes: ${BASE_S} s
full sync            ${FULL_S} s  = $(per_sec "$NUSERS" "$FULL_S") users/s  = $(ratio "$FULL_S" "$BASE_S") × ldapsearch
delta sync           ${DELTA_S} s for $CHANGES changes (imported ${DELTA_IMPORTED:-?}, updates ${DELTA_UPDATES:-?})  = $(ratio "$DELTA_S" "$FULL_S") × full  = $(ratio "$DELTA_S" "$BASE_S") × ldapsearch
CPU seconds          full: sync $FULL_CPU s, server $FULL_SERVER_CPU s; delta: sync $DELTA_CPU s, server $DELTA_SERVER_CPU s
peak RSS             sync: full $(mib "$FULL_RSS_KIB") MiB, delta $(mib "$DELTA_RSS_KIB") MiB; server: peak $(mib "$SERVER_HWM_KIB") MiB, now $(mib "$SERVER_RSS_KIB") MiB
database             $DB_SIZE (data dir)
(ldapmodify of the $CHANGES changes took ${MOD_S} s)
EOF
