#!/usr/bin/env bash
# Stop a directory started by scripts/slapd-start.sh and delete its folder.
#
#   usage: scripts/slapd-stop.sh DIR [--keep]      (--keep: stop only, keep the files)
#
# Sends SIGINT (slapd's clean shutdown), waits up to 5 s, then SIGKILL. Safe to call when
# nothing is running or DIR does not exist. Deletes DIR only if slapd-start.sh created it
# (marker file DIR/.cutover-slapd).
set -euo pipefail

[ "$#" -ge 1 ] && [ "$#" -le 2 ] || { echo "usage: $0 DIR [--keep]" >&2; exit 2; }
DIR="$1"
KEEP="${2:-}"
case "$KEEP" in
  '' | --keep) ;;
  *) echo "usage: $0 DIR [--keep]" >&2; exit 2 ;;
esac
[ -d "$DIR" ] || exit 0

# Only signal a process that is still a slapd (the pid may have been reused).
is_slapd() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = slapd ]; }

pid=""
[ -f "$DIR/slapd.pid" ] && pid="$(tr -dc '0-9' <"$DIR/slapd.pid")"
if is_slapd "$pid"; then
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    is_slapd "$pid" || break
    sleep 0.1
  done
  if is_slapd "$pid"; then
    echo "[slapd-stop] slapd (pid $pid) still running after 5 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
  fi
fi

if [ "$KEEP" != "--keep" ]; then
  if [ -f "$DIR/.cutover-slapd" ]; then
    rm -rf "$DIR"
  else
    echo "[slapd-stop] $DIR was not made by slapd-start.sh (no .cutover-slapd marker); not deleting it" >&2
  fi
fi
exit 0
