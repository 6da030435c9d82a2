#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for Cutover's tests.
#
#   usage: scripts/pg-start.sh DIR PORT
#
# Creates DIR (it must not already hold a cluster), runs initdb there, and starts the server
# on 127.0.0.1:PORT with trust auth, fsync off and max_connections 200. The unix socket
# lives in DIR (or in a short /tmp folder when DIR's path is too long for a socket name).
# When run as root the server runs as the `postgres` system user (created by Debian's
# postgresql package). It then creates role `cutover` (password `cutover`, CREATEDB) and
# database `cutover`, and prints exactly one line on stdout:
#
#   export CUTOVER_TEST_POSTGRES_URL=postgres://cutover:cutover@127.0.0.1:PORT/cutover
#
# Progress and errors go to stderr. Exits non-zero (printing the server log) if the
# server does not come up. Stop it and delete DIR with: scripts/pg-stop.sh DIR
set -euo pipefail

die() { printf '[pg-start] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[pg-start] %s\n' "$*" >&2; }

[ "$#" -eq 2 ] || die "usage: $0 DIR PORT"
DIR="$1"
PORT="$2"
case "$PORT" in
  '' | *[!0-9]*) die "PORT must be a number, got '$PORT'" ;;
esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "PORT out of range: $PORT"; fi

# (the newest installed major version; the glob stays literal if none is installed)
PGBIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
if [ ! -x "$PGBIN/initdb" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
  die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (run scripts/install-deps.sh)"
fi

# Is something already listening on the port? (bash's /dev/tcp: no extra tools needed)
port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
port_busy "$PORT" && die "port $PORT on 127.0.0.1 is already in use; pick another PORT"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
[ -e "$DIR/data" ] && die "$DIR/data already exists; stop and remove it first: scripts/pg-stop.sh $DIR"
# Marker so that pg-stop.sh only ever deletes folders this script set up.
: >"$DIR/.cutover-pg"

if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (install the postgresql package)"
  chown postgres: "$DIR"
  AS=(runuser -u postgres --)
  # The server must be able to reach DIR: every parent folder needs search permission for it.
  "${AS[@]}" test -w "$DIR" ||
    die "user 'postgres' cannot write $DIR (a parent folder is not searchable by it?); use a DIR under /tmp"
else
  AS=()
fi

# A unix socket path is limited to ~107 bytes; fall back to a short folder for long DIRs.
SOCKDIR="$DIR"
if [ "$(( ${#DIR} + 20 ))" -gt 100 ]; then
  SOCKDIR="$(mktemp -d /tmp/cutover-pgsock.XXXXXX)"
  [ "$(id -u)" = 0 ] && chown postgres: "$SOCKDIR"
  log "DIR path is long; unix socket goes to $SOCKDIR"
fi
printf '%s\n' "$SOCKDIR" >"$DIR/socket-dir"

t0=$(date +%s%N)
if ! "${AS[@]}" "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust \
  --no-locale --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1; then
  cat "$DIR/initdb.log" >&2
  die "initdb failed (log above, also in $DIR/initdb.log)"
fi

cat >>"$DIR/data/postgresql.conf" <<CONF

# --- Cutover test cluster (scripts/pg-start.sh) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKDIR'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF

# Loopback only, trust (throwaway cluster): replace initdb's rules with exactly these.
cat >"$DIR/data/pg_hba.conf" <<HBA
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
HBA
[ "$(id -u)" = 0 ] && chown postgres: "$DIR/data/pg_hba.conf"

if ! "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start >"$DIR/pg_ctl.log" 2>&1; then
  {
    echo "----- pg_ctl output -----"
    cat "$DIR/pg_ctl.log" 2>/dev/null || true
    echo "----- server log ($DIR/server.log) -----"
    cat "$DIR/server.log" 2>/dev/null || true
    echo "-------------------------"
  } >&2
  # Do not leave a half-started server behind.
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
  die "PostgreSQL did not start on 127.0.0.1:$PORT"
fi

psql_() {
  "${AS[@]}" "$PGBIN/psql" -X -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -qAt "$@"
}
if ! psql_ -c "CREATE ROLE cutover LOGIN PASSWORD 'cutover' CREATEDB;" \
  -c "CREATE DATABASE cutover OWNER cutover;" >&2; then
  cat "$DIR/server.log" >&2 || true
  die "could not create role/database 'cutover'"
fi

ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log "$("$PGBIN/postgres" --version) up on 127.0.0.1:$PORT in ${ms} ms (data: $DIR/data, log: $DIR/server.log)"
echo "export CUTOVER_TEST_POSTGRES_URL=postgres://cutover:cutover@127.0.0.1:$PORT/cutover"
