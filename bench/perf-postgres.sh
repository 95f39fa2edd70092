#!/usr/bin/env bash
# Profiles PostgreSQL's backends while `ledger bench ingest` sends webhooks:
# starts the bench, waits for its sending phase, records the backends of the
# bench database with perf for a few seconds, and prints the hottest
# PostgreSQL functions (inclusive). Needs perf and the right to trace the
# server's processes (root). Usage: [LEDGER_BIN=bin/ledger] bench/perf-postgres.sh [seconds] [bench flags...]
set -euo pipefail
secs=${1:-6}; shift || true
out=$(mktemp -d)
"${LEDGER_BIN:-./bin/ledger}" bench ingest --events 20000 "$@" >"$out/bench.txt" 2>"$out/progress.txt" &
bench=$!
touch "$out/progress.txt"
until grep -q '^bench: sending' "$out/progress.txt"; do
  kill -0 $bench 2>/dev/null || { cat "$out/progress.txt"; exit 1; }
  sleep 0.2
done
sleep 1
# Every backend of the bench database: the server's pool (the ceiling's
# connections are idle meanwhile).
pids=$(psql -h 127.0.0.1 -U postgres -Atc "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname LIKE 'ledger_bench_ingest_%' AND backend_type = 'client backend'")
perf record -F 999 -g -p "$pids" -o "$out/perf.data" -- sleep "$secs" >/dev/null 2>&1
wait $bench || true
grep -v '^bench' "$out/bench.txt" || true
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep '%' | grep -v '0x0000' | head -60 || true
echo "perf data: $out/perf.data"
