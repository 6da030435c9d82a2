#!/usr/bin/env bash
# Cutover's benchmark: a release build, a throwaway PostgreSQL, then `cutover bench` on SQLite
# and PostgreSQL. Prints ratios against raw argon2id and ES256 measured in the same run, the
# staged-rollout routing decisions per second of the pure core, and staged-rollout sign-ins
# against plain ones (see docs/PERFORMANCE.md). Everything listens on 127.0.0.1 and every loop
# is bounded.
#
#   usage: scripts/bench.sh [cutover bench options...]    e.g. scripts/bench.sh --signins 200
#          scripts/bench.sh --json /tmp/bench.json        # the results as JSON too
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

"$ROOT/scripts/install-deps.sh" >/dev/null
cargo build --release -p cutover

PG_DIR="$(mktemp -d /tmp/cutover-bench-pg.XXXXXX)"
rmdir "$PG_DIR"
cleanup() { "$ROOT/scripts/pg-stop.sh" "$PG_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
PORT=55532
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
eval "$("$ROOT/scripts/pg-start.sh" "$PG_DIR" "$PORT")"

echo "\$ target/release/cutover bench --postgres <throwaway cluster> $*"
"$ROOT/target/release/cutover" bench --postgres "$CUTOVER_TEST_POSTGRES_URL" "$@"
