#!/usr/bin/env bash
# Start a throwaway OpenLDAP directory (Debian's slapd 2.5) for Cutover's LDAP connector tests
# and benchmarks: a plain process on 127.0.0.1 only, no debconf, no /etc/ldap/slapd.d, no
# systemd, everything (config, schema, database, log) inside DIR.
#
#   usage: scripts/slapd-start.sh DIR PORT [BASE_DN]
#
#   DIR      state folder; created if missing. Must not hold a running slapd or a database.
#   PORT     TCP port on 127.0.0.1; must be free.
#   BASE_DN  suffix, default dc=example,dc=test (its first RDN must be dc=...).
#
# The directory holds only: BASE, ou=people,BASE, ou=groups,BASE and the service account
# uid=svc-sync,ou=people,BASE (password `sync-pw`), which may read everything, password hashes
# (userPassword, sambaNTPassword) included, without size or time limits. Tests add their own
# users and groups online. Administrator: cn=admin,BASE, password $LDAP_ADMIN_PW (default adminpw).
#
# Loaded modules: back_mdb, memberof (groupOfNames/member -> memberOf), refint, pw-sha2
# ({SSHA256}, {SSHA512}, ...), argon2 ({ARGON2}). Schemas: core, cosine, inetorgperson, nis and
# a minimal Samba one (sambaSamAccount / sambaNTPassword, Samba's own OIDs).
#
# Environment:
#   SLAPD_SEED_LDIF=FILE   extra LDIF loaded offline (slapadd -q) before the start, e.g. the
#                          100,000-user benchmark directory. memberOf is not computed for it.
#   LDAP_ADMIN_PW          rootdn password (default adminpw)
#   SLAPD_LOGLEVEL         slapd -d level (default stats; "none" for quiet benchmarks)
#   SLAPD_NO_SYNCPROV=1    leave out the syncprov overlay (a directory without RFC 4533)
#   SLAPD_START_TIMEOUT    seconds to wait for slapd to answer (default 30)
#   SLAPD_TLS_CERT, SLAPD_TLS_KEY
#                          PEM server certificate (chain) and key: enables StartTLS on PORT
#                          (copied into DIR)
#   SLAPD_LDAPS_PORT       with the two above: also listen for ldaps:// on 127.0.0.1:this port
#   SLAPD_PPOLICY=1        load the password policy overlay (ppolicy module; its schema is
#                          built into slapd 2.5) with the default policy
#                          cn=default,ou=policies,BASE: pwdAttribute userPassword, pwdLockout
#                          TRUE, pwdMaxFailure 5, pwdLockoutDuration 300, pwdMustChange TRUE,
#                          pwdMaxAge 31536000, pwdGraceAuthNLimit 0, pwdFailureCountInterval 0;
#                          ppolicy_use_lockout (cn=config: olcPPolicyUseLockout TRUE), so a bind
#                          to a locked account answers the accountLocked error in the response
#                          control. svc-sync reads the policy entry and the pwd* operational
#                          attributes (pwdAccountLockedTime, ...) like everything else.
#                          Default: no ppolicy (binds answer plain invalidCredentials).
#
# Putting a user into each password-policy state (SLAPD_PPOLICY=1; ldapmodify -x as the rootdn;
# tried against slapd 2.5.13, used by crates/cutover/tests/it/pta_ldap.rs):
#   locked       5 binds with a wrong password (pwdMaxFailure), or directly
#                  replace: pwdAccountLockedTime / pwdAccountLockedTime: <now, YYYYmmddHHMMSSZ>
#                (the rootdn may set it without the relax control). Binds then answer 49 +
#                ppolicy error accountLocked, even with the right password, until
#                pwdLockoutDuration (300 s) has passed.
#   disabled     replace: pwdAccountLockedTime / pwdAccountLockedTime: 000001010000Z: OpenLDAP's
#                permanent administrative lock: 49 + accountLocked, never expires.
#   expired      replace: pwdChangedTime / pwdChangedTime: 20000101000000Z (needs ldapmodify
#                -e relax, else 19 "no user modification allowed"; older than pwdMaxAge): the
#                right password answers 49 + ppolicy error passwordExpired (no grace binds).
#   must change  replace: pwdReset / pwdReset: TRUE (no relax needed): the bind succeeds (0)
#                with ppolicy error changeAfterReset; the session may only change the password.
#                Any userPassword the rootdn replaces is such a reset too (slapd sets pwdReset
#                itself): give test users their password when adding them.
#   unlock       delete: pwdAccountLockedTime (no relax needed); clearing the failure count,
#                delete: pwdFailureTime, needs -e relax.
# An empty password is never checked: slapd answers 53 "unauthenticated bind (DN with no
# password) disallowed" (RFC 4513 5.1.2).
#
# stdout, and nothing else there:
#   export SLAPD_DIR=... LDAP_URI=ldap://127.0.0.1:PORT LDAP_BASE=... LDAP_ADMIN_DN=... LDAP_ADMIN_PW=...
#   (one per line; plus LDAPS_URI=ldaps://127.0.0.1:SLAPD_LDAPS_PORT when that is set).
#   Progress and errors go to stderr; on failure slapd's log is printed.
# Stop with: scripts/slapd-stop.sh DIR [--keep]
#
# Needs: slapd ldap-utils (scripts/install-deps.sh installs them).
set -euo pipefail

die() { printf '[slapd-start] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[slapd-start] %s\n' "$*" >&2; }

[ "$#" -ge 2 ] && [ "$#" -le 3 ] || die "usage: $0 DIR PORT [BASE_DN]"
DIR="$1"
PORT="$2"
BASE="${3:-dc=example,dc=test}"
case "$PORT" in
  '' | *[!0-9]*) die "PORT must be a number, got '$PORT'" ;;
esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "PORT out of range: $PORT"; fi
case "$BASE" in
  dc=*) ;;
  *) die "BASE_DN must start with dc=... (the base entry is a dcObject), got '$BASE'" ;;
esac
DC="${BASE#dc=}"
DC="${DC%%,*}"
ADMIN_DN="cn=admin,${BASE}"
ADMIN_PW="${LDAP_ADMIN_PW:-adminpw}"
SYNC_DN="uid=svc-sync,ou=people,${BASE}"
SYNC_PW="sync-pw"
LOGLEVEL="${SLAPD_LOGLEVEL:-stats}"
START_TIMEOUT="${SLAPD_START_TIMEOUT:-30}"
MODULE_DIR=/usr/lib/ldap
SCHEMA_DIR=/etc/ldap/schema

# --- tools ------------------------------------------------------------------------------
# /usr/sbin is not on every user's PATH.
SLAPD=/usr/sbin/slapd
SLAPADD=/usr/sbin/slapadd
SLAPPASSWD=/usr/sbin/slappasswd
for tool in "$SLAPD" "$SLAPADD" "$SLAPPASSWD"; do
  [ -x "$tool" ] || die "$tool not found: install the slapd package (scripts/install-deps.sh)"
done
for tool in ldapsearch ldapwhoami; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: install the ldap-utils package (scripts/install-deps.sh)"
done
for m in back_mdb memberof refint pw-sha2 argon2; do
  [ -e "$MODULE_DIR/$m.so" ] || [ -e "$MODULE_DIR/$m.la" ] || die "slapd module $m not found in $MODULE_DIR"
done
for s in core cosine inetorgperson nis; do
  [ -f "$SCHEMA_DIR/$s.schema" ] || die "schema $SCHEMA_DIR/$s.schema not found (slapd package incomplete?)"
done
TLS_CERT="${SLAPD_TLS_CERT:-}"
TLS_KEY="${SLAPD_TLS_KEY:-}"
LDAPS_PORT="${SLAPD_LDAPS_PORT:-}"
if [ -n "$TLS_CERT" ] || [ -n "$TLS_KEY" ]; then
  [ -n "$TLS_CERT" ] && [ -n "$TLS_KEY" ] || die "set both SLAPD_TLS_CERT and SLAPD_TLS_KEY, or neither"
  [ -r "$TLS_CERT" ] || die "SLAPD_TLS_CERT=$TLS_CERT is not a readable file"
  [ -r "$TLS_KEY" ] || die "SLAPD_TLS_KEY=$TLS_KEY is not a readable file"
fi
if [ -n "$LDAPS_PORT" ]; then
  [ -n "$TLS_CERT" ] || die "SLAPD_LDAPS_PORT needs SLAPD_TLS_CERT and SLAPD_TLS_KEY"
  case "$LDAPS_PORT" in
    '' | *[!0-9]*) die "SLAPD_LDAPS_PORT must be a number, got '$LDAPS_PORT'" ;;
  esac
  [ "$LDAPS_PORT" != "$PORT" ] || die "SLAPD_LDAPS_PORT must differ from PORT"
fi
if [ -n "${SLAPD_SEED_LDIF:-}" ] && [ ! -r "$SLAPD_SEED_LDIF" ]; then
  die "SLAPD_SEED_LDIF=$SLAPD_SEED_LDIF is not a readable file"
fi

# --- port and state folder -------------------------------------------------------------
# Is something already listening on the port? (bash's /dev/tcp: no extra tools needed)
port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
port_busy "$PORT" && die "port $PORT on 127.0.0.1 is already in use; pick another PORT"
if [ -n "$LDAPS_PORT" ] && port_busy "$LDAPS_PORT"; then
  die "port $LDAPS_PORT on 127.0.0.1 (SLAPD_LDAPS_PORT) is already in use; pick another"
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
is_slapd() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = slapd ]; }
if [ -f "$DIR/slapd.pid" ]; then
  old_pid="$(tr -dc '0-9' <"$DIR/slapd.pid")"
  if is_slapd "$old_pid"; then
    die "$DIR already has a running slapd (pid $old_pid); stop it first: scripts/slapd-stop.sh $DIR"
  fi
fi
[ -e "$DIR/db/data.mdb" ] && die "$DIR/db already holds a database; remove it first: scripts/slapd-stop.sh $DIR"

mkdir -p "$DIR/db"
# Marker so that slapd-stop.sh only ever deletes folders this script set up.
: >"$DIR/.cutover-slapd"
rm -f "$DIR/slapd.log" "$DIR/slapd.pid" "$DIR/slapd.args"

# --- schema: the part of Samba's samba.schema that Cutover reads (same OIDs) ------------
cat >"$DIR/samba-min.schema" <<'EOF'
# Minimal subset of Samba's samba.schema: enough to store NT password hashes.
attributetype ( 1.3.6.1.4.1.7165.2.1.25 NAME 'sambaNTPassword'
	DESC 'MD4 hash of the unicode password'
	EQUALITY caseIgnoreIA5Match
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{32}
	SINGLE-VALUE )

objectclass ( 1.3.6.1.4.1.7165.2.2.6 NAME 'sambaSamAccount' SUP top AUXILIARY
	DESC 'Samba 3.0 Auxilary SAM Account (minimal subset)'
	MAY ( sambaNTPassword ) )
EOF

TLS_CONF=""
if [ -n "$TLS_CERT" ]; then
  cp "$TLS_CERT" "$DIR/tls-cert.pem"
  cp "$TLS_KEY" "$DIR/tls-key.pem"
  chmod 600 "$DIR/tls-key.pem"
  TLS_CONF="TLSCertificateFile $DIR/tls-cert.pem
TLSCertificateKeyFile $DIR/tls-key.pem"
fi

ADMIN_HASH="$("$SLAPPASSWD" -h '{SSHA}' -s "$ADMIN_PW")"
SYNC_HASH="$("$SLAPPASSWD" -h '{SSHA}' -s "$SYNC_PW")"

# --- password policy (SLAPD_PPOLICY=1) ---------------------------------------------------------
PPOLICY_DN="cn=default,ou=policies,${BASE}"
if [ "${SLAPD_PPOLICY:-0}" = 1 ]; then
  [ -e "$MODULE_DIR/ppolicy.so" ] || [ -e "$MODULE_DIR/ppolicy.la" ] || die "slapd module ppolicy not found in $MODULE_DIR (SLAPD_PPOLICY=1)"
  PPOLICY_MODULE="moduleload ppolicy"
  # The last overlay configured runs first; ppolicy sees every bind before the others.
  PPOLICY_CONF="overlay ppolicy
ppolicy_default \"$PPOLICY_DN\"
ppolicy_use_lockout"
else
  PPOLICY_MODULE="# (no password policy: SLAPD_PPOLICY is not 1)"
  PPOLICY_CONF=""
fi

# --- slapd.conf ---------------------------------------------------------------------------
# RFC 4533 content synchronisation (what cutover sync's delta imports use when a directory
# offers it); SLAPD_NO_SYNCPROV=1 leaves it out, for a directory that does not.
if [ "${SLAPD_NO_SYNCPROV:-0}" = 1 ]; then
  SYNCPROV_CONF="# (content synchronisation left out: SLAPD_NO_SYNCPROV=1)"
else
  SYNCPROV_CONF="overlay syncprov
syncprov-checkpoint 100 5"
fi
cat >"$DIR/slapd.conf" <<EOF
# Generated by scripts/slapd-start.sh -- throwaway test directory.
include $SCHEMA_DIR/core.schema
include $SCHEMA_DIR/cosine.schema
include $SCHEMA_DIR/inetorgperson.schema
include $SCHEMA_DIR/nis.schema
include $DIR/samba-min.schema

modulepath $MODULE_DIR
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload pw-sha2
moduleload argon2
moduleload syncprov
$PPOLICY_MODULE

pidfile  $DIR/slapd.pid
argsfile $DIR/slapd.args
password-hash {SSHA}
sizelimit unlimited
timelimit unlimited
$TLS_CONF

database mdb
# mdb's map is virtual: 2 GiB is room for 100,000 users and 5,000 groups, not memory used.
maxsize  2147483648
# Throwaway data: no fsync per write (much faster bulk adds).
dbnosync
suffix   "$BASE"
rootdn   "$ADMIN_DN"
rootpw   $ADMIN_HASH
directory $DIR/db
index objectClass eq
index uid,cn,mail eq,sub
index member,memberUid eq
index entryUUID,entryCSN eq
# An eq index on a generalizedTime attribute is ordered in slapd 2.5 (its matching rule is
# flagged SLAP_MR_ORDERED_INDEX), so it also serves (modifyTimestamp>=...) delta filters.
index modifyTimestamp eq

limits dn.exact="$SYNC_DN" size=unlimited size.pr=unlimited size.prtotal=unlimited time=unlimited

# memberOf on users, kept in sync with groupOfNames.member (for entries added online)
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member manager

$SYNCPROV_CONF

$PPOLICY_CONF

# The rootdn always has full access. svc-sync reads everything, password hashes included;
# users bind with their password and read the directory.
access to attrs=userPassword,sambaNTPassword
  by dn.exact="$SYNC_DN" read
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="$SYNC_DN" read
  by users read
  by * none
EOF

# --- seed (offline) -----------------------------------------------------------------------
cat >"$DIR/seed.ldif" <<EOF
dn: $BASE
objectClass: top
objectClass: dcObject
objectClass: organization
o: Cutover test directory
dc: $DC

dn: ou=people,$BASE
objectClass: organizationalUnit
ou: people

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups

dn: $SYNC_DN
objectClass: inetOrgPerson
uid: svc-sync
cn: Cutover sync service
sn: Service
userPassword: $SYNC_HASH
EOF
if [ "${SLAPD_PPOLICY:-0}" = 1 ]; then
  cat >>"$DIR/seed.ldif" <<EOF

dn: ou=policies,$BASE
objectClass: organizationalUnit
ou: policies

dn: $PPOLICY_DN
objectClass: device
objectClass: pwdPolicy
cn: default
description: Default password policy (scripts/slapd-start.sh, SLAPD_PPOLICY=1)
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 5
pwdLockoutDuration: 300
pwdMustChange: TRUE
pwdMaxAge: 31536000
pwdGraceAuthNLimit: 0
pwdFailureCountInterval: 0
EOF
fi

slapadd_() {
  local what="$1"
  shift
  if ! "$SLAPADD" -q -f "$DIR/slapd.conf" "$@" >"$DIR/slapadd.log" 2>&1; then
    cat "$DIR/slapadd.log" >&2
    die "slapadd of $what failed (output above, also in $DIR/slapadd.log)"
  fi
}
t0=$(date +%s%N)
slapadd_ "the seed entries" -l "$DIR/seed.ldif"
if [ -n "${SLAPD_SEED_LDIF:-}" ]; then
  log "loading $SLAPD_SEED_LDIF offline (slapadd -q)"
  slapadd_ "$SLAPD_SEED_LDIF" -l "$SLAPD_SEED_LDIF"
  log "loaded $SLAPD_SEED_LDIF in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
fi

# --- start --------------------------------------------------------------------------------
# -d keeps slapd in the foreground and sends its log to stderr, i.e. to DIR/slapd.log (in
# daemon mode it would log to syslog only). It runs in the background of this script.
URI="ldap://127.0.0.1:${PORT}"
LISTEN="${URI}/"
[ -n "$LDAPS_PORT" ] && LISTEN="$LISTEN ldaps://127.0.0.1:${LDAPS_PORT}/"
start_ns=$(date +%s%N)
"$SLAPD" -d "$LOGLEVEL" -f "$DIR/slapd.conf" -h "$LISTEN" </dev/null >"$DIR/slapd.log" 2>&1 &
spid=$!

fail() {
  {
    echo "----- slapd log ($DIR/slapd.log) -----"
    tail -n 60 "$DIR/slapd.log" 2>/dev/null || true
    echo "--------------------------------------"
  } >&2
  if kill -0 "$spid" 2>/dev/null; then
    kill -INT "$spid" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$spid" 2>/dev/null || true
  fi
  die "$*"
}

deadline=$(( $(date +%s) + START_TIMEOUT ))
until ldapsearch -x -LLL -H "$URI" -b "" -s base namingContexts >/dev/null 2>&1; do
  if ! kill -0 "$spid" 2>/dev/null; then
    if grep -q -i "address already in use" "$DIR/slapd.log" 2>/dev/null; then
      fail "port $PORT${LDAPS_PORT:+ or $LDAPS_PORT} on 127.0.0.1 is already in use; pick another"
    fi
    fail "slapd exited during start-up (log above)"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "slapd did not answer on $URI within ${START_TIMEOUT} s"
  sleep 0.05
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))

# The service account must be able to bind: proves the config, the ACLs and the seed.
ldapwhoami -x -H "$URI" -D "$SYNC_DN" -w "$SYNC_PW" >/dev/null 2>&1 ||
  fail "slapd is up but $SYNC_DN cannot bind"

log "slapd $("$SLAPD" -VV 2>&1 | sed -n 's/.*slapd \([^ ]*\).*/\1/p' | head -n 1) ready on $URI in ${ready_ms} ms (pid $spid, log $DIR/slapd.log)"
cat <<EOF
export SLAPD_DIR=$DIR
export LDAP_URI=$URI
export LDAP_BASE=$BASE
export LDAP_ADMIN_DN=$ADMIN_DN
export LDAP_ADMIN_PW=$ADMIN_PW
EOF
[ -z "$LDAPS_PORT" ] || echo "export LDAPS_URI=ldaps://127.0.0.1:${LDAPS_PORT}"
