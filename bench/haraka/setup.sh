#!/bin/sh
# Creates a Haraka instance for the bench under DIR, listening on 127.0.0.1:PORT
# only: recipients @localhost accepted (rcpt_to.in_host_list), each message
# written to its own file and fdatasync'ed before the 250 (queue_fsync.js here),
# logging at warn. Haraka's own default of one process (no cluster `nodes`).
# Start it with  HARAKA_BENCH_QUEUE=DIR/queue haraka -c DIR
# (bench/run.ts does, and stops it by its pid). Prints the haraka binary used.
# Haraka is looked up in $HARAKA_BIN, then PATH, then bench/haraka/.install
# (bench/haraka/install.sh puts it there).
# Usage: bench/haraka/setup.sh DIR PORT  |  bench/haraka/setup.sh --which
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${HARAKA_BIN:-$(command -v haraka || true)}
[ -n "$BIN" ] || BIN="$HERE/.install/node_modules/.bin/haraka"
[ -x "$BIN" ] || { echo "Haraka is not installed: run bench/haraka/install.sh (or set HARAKA_BIN)" >&2; exit 3; }
if [ "${1:-}" = --which ]; then echo "$BIN"; exit 0; fi
DIR=${1:?usage: setup.sh DIR PORT}
PORT=${2:?usage: setup.sh DIR PORT}
mkdir -p "$DIR/config" "$DIR/plugins" "$DIR/queue"
cp "$HERE/queue_fsync.js" "$DIR/plugins/queue_fsync.js"
printf 'listen=127.0.0.1:%s\n' "$PORT" > "$DIR/config/smtp.ini"
printf '[main]\nlevel=warn\ntimestamps=false\nformat=default\n' > "$DIR/config/log.ini"
# Haraka's own connection.ini with the message size limit of smtp-receive's (20,000,000)
sed 's/^bytes=.*/bytes=20000000/' "$(dirname "$(readlink -f "$BIN")")/../config/connection.ini" > "$DIR/config/connection.ini"
printf 'rcpt_to.in_host_list\nqueue_fsync\n' > "$DIR/config/plugins"
printf 'localhost\n' > "$DIR/config/host_list"
printf 'haraka.bench.invalid\n' > "$DIR/config/me"
echo "$BIN"
