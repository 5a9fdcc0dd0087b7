#!/usr/bin/env bash
# `make run`: relayd on SMTP_LISTEN beside the web UI on HOST:PORT; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
SMTP_LISTEN=${SMTP_LISTEN:-127.0.0.1:2525}

mkdir -p var/log
# The log rotates at 10 MB (three old files kept). Process substitution keeps $! the PID of relayd itself.
RELAYADMIN_URL="http://$HOST:$PORT" "$BIN/python" manage.py runrelay --listen "$SMTP_LISTEN" \
  > >("$BIN/python" tools/rotating_log.py var/log/relayd.log) 2>&1 &
relayd=$!
# Stop relayd by its PID however this script ends; SIGTERM lets it finish sessions in flight.
trap 'kill -TERM "$relayd" 2>/dev/null; wait "$relayd" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

echo "relayadmin web UI: http://$HOST:$PORT/   relayd SMTP: $SMTP_LISTEN (log: var/log/relayd.log)   Ctrl-C stops both"
"$BIN/gunicorn" relayadmin.wsgi --bind "$HOST:$PORT" --workers 2 --access-logfile - --error-logfile -
