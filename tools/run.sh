#!/usr/bin/env bash
# `make run`: relayd on SMTP_LISTEN beside the web UI on HOST:PORT; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
SMTP_LISTEN=${SMTP_LISTEN:-127.0.0.1:2525}
METRICS_LISTEN=${METRICS_LISTEN:-127.0.0.1:9025}
# The self-test's default (and allowed) target is this relayd: its first listen address, and a wildcard
# address is reached on loopback.
FIRST_LISTEN=${SMTP_LISTEN%%,*}
case $FIRST_LISTEN in
  0.0.0.0:*) SMTP_TARGET="127.0.0.1:${FIRST_LISTEN##*:}" ;;
  "[::]:"*) SMTP_TARGET="[::1]:${FIRST_LISTEN##*:}" ;;
  *) SMTP_TARGET=$FIRST_LISTEN ;;
esac
export RELAYD_SMTP_TARGET=${RELAYD_SMTP_TARGET:-$SMTP_TARGET}
URL="http://$HOST:$PORT"
[[ $HOST == *:* ]] && URL="http://[$HOST]:$PORT"

# Made before the servers start, shown after their start-up lines so that it is the last thing on screen.
# It stays in this shell's memory only: the password is never written to a file.
first_run_notice=$("$BIN/python" manage.py ensure_admin)

mkdir -p var/log
# relayd refuses to stay root after binding. make run is a try-out on port 2525 with data under
# var/, so a root shell (a container) gets --allow-root, said aloud; production units never run it as root.
root_option=()
if [[ $(id -u) == 0 ]]; then
  root_option=(--allow-root)
  echo "make run: running relayd as root (--allow-root); in production use docs/deploy/relayd@.service" >&2
fi
# The log rotates at 10 MB (three old files kept). Process substitution keeps $! the PID of relayd itself.
RELAYADMIN_URL="$URL" "$BIN/python" manage.py runrelay --listen "$SMTP_LISTEN" --metrics-listen "$METRICS_LISTEN" \
  "${root_option[@]}" \
  > >("$BIN/python" tools/rotating_log.py var/log/relayd.log) 2>&1 &
relayd=$!
# The ASGI application under uvicorn: relayd's export then works as a long poll (?wait=N, policy/long_poll.py)
# on the same URL as the pages, so a relayd given --policy-url "$URL/api/v1/export/relayd/" hears of a change at
# once. Django runs the (sync) pages in one thread per worker process, so two workers serve pages as gunicorn's
# two sync workers did, while waiting nodes hold no thread at all. Production splits the two (docs/deploy/).
"$BIN/uvicorn" relayadmin.asgi:application --host "$HOST" --port "$PORT" --workers 2 --no-proxy-headers &
web=$!
# Stop both by their PIDs however this script ends; SIGTERM lets relayd finish sessions in flight.
trap 'kill -TERM "$relayd" "$web" 2>/dev/null; wait "$relayd" "$web" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

for _ in $(seq 100); do
  "$BIN/python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$URL/healthz" \
    2>/dev/null && break
  kill -0 "$web" 2>/dev/null || exit 1
  sleep 0.2
done
echo
echo "relayadmin web UI: $URL/   relayd SMTP: $SMTP_LISTEN (log: var/log/relayd.log)   Ctrl-C stops both"
[[ -n $first_run_notice ]] && echo "$first_run_notice"
wait "$web"
