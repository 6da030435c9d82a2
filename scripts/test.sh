#!/usr/bin/env bash
# Cutover's full test run: the one command CI and developers use.
#
#   usage: scripts/test.sh [ARGS...]     (ARGS go to `cargo test --workspace`,
#                                          e.g. scripts/test.sh -- --nocapture)
#
# 1. installs missing test dependencies        (scripts/install-deps.sh;
#                                                skip with CUTOVER_SKIP_INSTALL=1)
# 2. starts a throwaway PostgreSQL cluster      (.test-state/pg, first free port from 55432;
#                                                stopped and deleted on exit, even on failure
#                                                or Ctrl-C)
# 3. exports for the tests:
#      CUTOVER_TEST_POSTGRES_URL  postgres://cutover:cutover@127.0.0.1:PORT/cutover
#      CUTOVER_TEST_NODE_DIR      <repo>/e2e   (node_modules with playwright-core)
#      CUTOVER_TEST_CHROMIUM      /usr/bin/chromium (unless already set)
#      CUTOVER_TEST_STATE_DIR     <repo>/.test-state (scratch space, gitignored)
# 4. cargo fmt --check, cargo clippy -D warnings, cargo test --workspace
#
# Stops at the first failing step and exits non-zero.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

section() { printf '\n==================== %s ====================\n' "$*"; }
note() { printf '[test.sh] %s\n' "$*" >&2; }

START_TS=$(date +%s)
PG_DIR=""
TEST_LOG=""

cleanup() {
  local rc=$?
  if [ -n "$PG_DIR" ]; then
    section "stopping PostgreSQL"
    "$ROOT/scripts/pg-stop.sh" "$PG_DIR" || note "warning: pg-stop.sh failed for $PG_DIR"
  fi
  if [ "$rc" -eq 0 ]; then
    section "ALL PASSED in $(( $(date +%s) - START_TS )) s"
  else
    section "FAILED (exit $rc) after $(( $(date +%s) - START_TS )) s"
  fi
  # One closing line that adds up every test binary's "test result" line.
  if [ -n "$TEST_LOG" ] && [ -f "$TEST_LOG" ]; then
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "tests: %d passed, %d failed\n", p, f }' "$TEST_LOG"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run one step; on failure name it and stop.
step() {
  local name="$1"
  shift
  section "$name"
  printf '$ %s\n' "$*"
  local t0 rc=0
  t0=$(date +%s)
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    note "step '$name' FAILED (exit $rc)"
    exit "$rc"
  fi
  note "step '$name' ok ($(( $(date +%s) - t0 )) s)"
}

# --- 1. dependencies ----------------------------------------------------------------------
if [ "${CUTOVER_SKIP_INSTALL:-0}" = 1 ]; then
  section "dependencies (skipped: CUTOVER_SKIP_INSTALL=1)"
else
  step "dependencies" "$ROOT/scripts/install-deps.sh"
fi

# --- 2. PostgreSQL ------------------------------------------------------------------------
section "PostgreSQL"
STATE_DIR="$ROOT/.test-state"
mkdir -p "$STATE_DIR"
PG_DIR="$STATE_DIR/pg"
# As root the server runs as 'postgres', which must be able to reach the folder. A checkout
# under /root (mode 700) is not reachable: use a folder under /tmp then.
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STATE_DIR" 2>/dev/null; then
  PG_DIR="$(mktemp -d /tmp/cutover-test-pg.XXXXXX)"
  rmdir "$PG_DIR"
  note "user 'postgres' cannot reach $STATE_DIR; using $PG_DIR"
fi
# A cluster left behind by an interrupted earlier run: stop it and start afresh.
"$ROOT/scripts/pg-stop.sh" "$PG_DIR"
rm -rf "$PG_DIR"

port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
PG_PORT=""
for p in 55432 55433 55434 55435 55436 55437 55438 55439 55440 55441; do
  if ! port_busy "$p"; then PG_PORT="$p"; break; fi
done
if [ -z "$PG_PORT" ]; then
  note "no free port in 55432-55441 on 127.0.0.1 for PostgreSQL"
  PG_DIR=""
  exit 1
fi
if ! pg_env="$("$ROOT/scripts/pg-start.sh" "$PG_DIR" "$PG_PORT")"; then
  note "PostgreSQL failed to start (see the log above)"
  exit 1
fi
case "$pg_env" in
  "export CUTOVER_TEST_POSTGRES_URL=postgres://"*) eval "$pg_env" ;;
  *) note "unexpected output from pg-start.sh: $pg_env"; exit 1 ;;
esac
export CUTOVER_TEST_POSTGRES_URL
export CUTOVER_TEST_NODE_DIR="$ROOT/e2e"
export CUTOVER_TEST_CHROMIUM="${CUTOVER_TEST_CHROMIUM:-/usr/bin/chromium}"
export CUTOVER_TEST_STATE_DIR="$STATE_DIR"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
printf 'CUTOVER_TEST_POSTGRES_URL=%s\nCUTOVER_TEST_NODE_DIR=%s\nCUTOVER_TEST_CHROMIUM=%s\n' \
  "$CUTOVER_TEST_POSTGRES_URL" "$CUTOVER_TEST_NODE_DIR" "$CUTOVER_TEST_CHROMIUM"

# --- 3. Rust checks and tests -------------------------------------------------------------
step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
TEST_LOG="$STATE_DIR/cargo-test.log"
run_tests() { cargo test --workspace "$@" 2>&1 | tee "$TEST_LOG"; }
step "cargo test" run_tests "$@"
