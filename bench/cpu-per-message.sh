#!/bin/bash
# serve's CPU per message, split main thread / other threads, from /proc (what the
# kernel charged, not a profiler's wall-clock samples). One run: a fresh queue, the
# bench's load generator, then the CPU the server used meanwhile.
#
#   bench/cpu-per-message.sh CHECKOUT LABEL MESSAGES SESSIONS [serve options...]
#
# CHECKOUT is a built checkout (npm run build), so that two versions can be run in
# turn, side by side, e.g. end to end and receive only:
#   bench/cpu-per-message.sh . e2e 8000 16 --receiver "$PWD/bench/fixtures/trivial-deliver.mjs"
#   bench/cpu-per-message.sh . receive 8000 16 --no-runner
# Listens on 127.0.0.1:2703; the queue is a temporary directory, removed afterwards.
set -eu
checkout=$(cd "$1" && pwd); label=$2; n=$3; sessions=$4; shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
queue=$(mktemp -d /tmp/bench-cpu-XXXXXX)
(cd "$checkout" && exec node bin/smtp-receive.js serve --queue "$queue" --listen 127.0.0.1:2703 --no-reverse-dns \
  --max-clients-per-ip 0 --auth off --metrics off "$@" >"$queue.log" 2>&1) &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$queue" "$queue.log"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$queue.log" 2>/dev/null && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "$1"; } # utime + stime of a /proc stat file, in clock ticks
t0=$(ticks /proc/$pid/stat); m0=$(ticks /proc/$pid/task/$pid/stat)
result=$(cd "$here" && node --import tsx bench/loadgen-cli.ts --port 2703 --sessions "$sessions" --messages "$n" --size 4096)
sleep 0.5 # the last deliveries and their commit
t1=$(ticks /proc/$pid/stat); m1=$(ticks /proc/$pid/task/$pid/stat)
hz=$(getconf CLK_TCK)
echo "$result" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const r = JSON.parse(s); const [label, n, total, main, hz] = process.argv.slice(1).map((v, i) => (i ? Number(v) : v));
    const ms = (ticks) => ((ticks / hz) * 1000 / n).toFixed(3);
    console.log(`${label.padEnd(10)} ${r.accepted}/${n} accepted, ${r.msgPerSec.toFixed(0)} msg/s, CPU per message: ${ms(total)} ms (main thread ${ms(main)}, other threads ${ms(total - main)})`);
  });' "$label" "$n" "$((t1 - t0))" "$((m1 - m0))" "$hz"
