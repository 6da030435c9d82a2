#!/usr/bin/env bash
# Start a throwaway SMTP sink (e2e/smtp-sink.py, Python aiosmtpd) for Cutover's e-mail tests.
#
#   usage: scripts/smtp-start.sh DIR [PORT] [SINK ARGS...]
#
#   DIR        Maildir and state folder; created if missing. Messages land in DIR/new, one
#              JSON line per accepted message in DIR/log.jsonl; the sink's output goes to
#              DIR/smtp-sink.log, its pid to DIR/smtp-sink.pid.
#   PORT       TCP port on 127.0.0.1; 0 or omitted: the sink binds a free port itself (no race).
#   SINK ARGS  passed on, e.g. --delay-ms 2000, --starttls-cert C --starttls-key K,
#              --auth USER:PASS, --require-auth (see e2e/smtp-sink.py).
#
# Prints exactly one line on stdout, for eval:
#
#   export SMTP_PORT=PORT SMTP_MAILDIR=DIR SMTP_PID=PID
#
# Progress and errors go to stderr. Fails (non-zero, with the sink's log) when no python3 can
# import aiosmtpd (run scripts/install-deps.sh) or the sink does not come up within
# SMTP_START_TIMEOUT seconds (default 15). Python: $PYTHON if set, else the first of
# `python3` and /usr/bin/python3 that has aiosmtpd (Debian's python3-aiosmtpd lives in the
# system Python, which a pyenv python3 on PATH does not see).
# Stop it with: scripts/smtp-stop.sh DIR   (the messages are kept)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf '[smtp-start] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[smtp-start] %s\n' "$*" >&2; }

[ "$#" -ge 1 ] || die "usage: $0 DIR [PORT] [SINK ARGS...]"
DIR="$1"
shift
PORT=0
if [ "$#" -ge 1 ]; then
  case "$1" in
    --*) ;;                       # no PORT, sink args follow
    '' | *[!0-9]*) die "PORT must be a number, got '$1'" ;;
    *) PORT="$1"; shift ;;
  esac
fi
[ "$PORT" -le 65535 ] || die "PORT out of range: $PORT"

# --- a python3 that has aiosmtpd ---------------------------------------------------------
PY=""
if [ -n "${PYTHON:-}" ]; then
  "$PYTHON" -c 'import aiosmtpd' 2>/dev/null ||
    die "PYTHON=$PYTHON cannot import aiosmtpd (run scripts/install-deps.sh, or unset PYTHON)"
  PY="$PYTHON"
else
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import aiosmtpd' 2>/dev/null; then
      PY="$(command -v "$candidate")"
      break
    fi
  done
  [ -n "$PY" ] || die "no python3 with aiosmtpd found (tried python3, /usr/bin/python3): run scripts/install-deps.sh (Debian package python3-aiosmtpd)"
fi

# --- start ------------------------------------------------------------------------------
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/smtp-sink.pid"
if [ -f "$PIDFILE" ]; then
  old="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -n "$old" ] && kill -0 "$old" 2>/dev/null && grep -qa 'smtp-sink.py' "/proc/$old/cmdline" 2>/dev/null; then
    die "a sink is already running for $DIR (pid $old); stop it first: scripts/smtp-stop.sh $DIR"
  fi
  rm -f "$PIDFILE"
fi
OUT="$DIR/smtp-sink.out"
LOG="$DIR/smtp-sink.log"
: >"$OUT"

# Output to files, stdin from /dev/null: the sink must not hold the caller's pipes open
# (eval "$(scripts/smtp-start.sh ...)" would wait for it forever).
"$PY" "$ROOT/e2e/smtp-sink.py" --port "$PORT" --maildir "$DIR" "$@" >"$OUT" 2>"$LOG" </dev/null &
pid=$!

timeout_s="${SMTP_START_TIMEOUT:-15}"
deadline=$(( $(date +%s) + timeout_s ))
port=""
while :; do
  port="$(sed -n 's/^ready \([0-9][0-9]*\)$/\1/p' "$OUT" | head -n 1)"
  [ -n "$port" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    rc=0
    wait "$pid" || rc=$?
    {
      echo "----- sink log ($LOG) -----"
      cat "$LOG" 2>/dev/null || true
      echo "----------------------------"
    } >&2
    die "the SMTP sink exited (status $rc) before it was ready"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    cat "$LOG" >&2 || true
    die "the SMTP sink was not ready within ${timeout_s} s"
  fi
  sleep 0.05
done

echo "$pid" >"$PIDFILE"
echo "$port" >"$DIR/smtp-sink.port"
log "aiosmtpd sink up on 127.0.0.1:$port (pid $pid, python $PY, maildir $DIR)"
printf 'export SMTP_PORT=%s SMTP_MAILDIR=%q SMTP_PID=%s\n' "$port" "$DIR" "$pid"
