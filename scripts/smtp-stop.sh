#!/usr/bin/env bash
# Stop a sink started by scripts/smtp-start.sh DIR. The messages (DIR/new, DIR/log.jsonl)
# are kept: they are test evidence.
#
#   usage: scripts/smtp-stop.sh DIR
#
# SIGTERM first (the sink exits cleanly), SIGKILL after 5 s. Safe to call when nothing is
# running or DIR does not exist. Only a process whose command line names smtp-sink.py is
# signalled, so a stale pid file never kills an unrelated process.
set -euo pipefail

[ "$#" -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR="$1"
PIDFILE="$DIR/smtp-sink.pid"
[ -f "$PIDFILE" ] || exit 0
pid="$(head -n 1 "$PIDFILE" 2>/dev/null || true)"
case "$pid" in
  '' | *[!0-9]*) rm -f "$PIDFILE"; exit 0 ;;
esac

alive() {
  # A zombie (exited, not yet reaped by its parent) counts as stopped.
  [ -r "/proc/$1/stat" ] || return 1
  local state
  state="$(sed 's/^.*) \(.\).*$/\1/' "/proc/$1/stat" 2>/dev/null || echo '?')"
  [ "$state" != Z ]
}

if alive "$pid" && grep -qa 'smtp-sink.py' "/proc/$pid/cmdline" 2>/dev/null; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    printf '[smtp-stop] sink pid %s ignored SIGTERM for 5 s; killing it\n' "$pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
rm -f "$PIDFILE"
exit 0
