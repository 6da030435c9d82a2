#!/usr/bin/env bash
# Stop a cluster started by scripts/pg-start.sh and delete its folder.
#
#   usage: scripts/pg-stop.sh DIR [--keep]      (--keep: stop only, keep the files)
#
# Safe to call when nothing is running or DIR does not exist. Deletes DIR only if
# pg-start.sh created it (marker file DIR/.cutover-pg).
set -euo pipefail

[ "$#" -ge 1 ] || { echo "usage: $0 DIR [--keep]" >&2; exit 2; }
DIR="$1"
KEEP="${2:-}"
[ -d "$DIR" ] || exit 0

# (the newest installed major version; the glob stays literal if none is installed)
PGBIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); else AS=(); fi

if [ -f "$DIR/data/postmaster.pid" ]; then
  if [ -x "$PGBIN/pg_ctl" ] && "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 20 stop >/dev/null 2>&1; then
    :
  else
    # pg_ctl failed or is missing: kill the postmaster named in its pid file.
    pid="$(head -n 1 "$DIR/data/postmaster.pid" 2>/dev/null || true)"
    case "$pid" in
      '' | *[!0-9]*) ;;
      *) kill -QUIT "$pid" 2>/dev/null || true; sleep 1; kill -KILL "$pid" 2>/dev/null || true ;;
    esac
  fi
fi

if [ "$KEEP" != "--keep" ] && [ -f "$DIR/.cutover-pg" ]; then
  sockdir="$(cat "$DIR/socket-dir" 2>/dev/null || true)"
  case "$sockdir" in
    /tmp/cutover-pgsock.*) rm -rf "$sockdir" ;;
  esac
  rm -rf "$DIR"
fi
exit 0
