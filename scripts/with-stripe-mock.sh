#!/usr/bin/env bash
# Usage: scripts/with-stripe-mock.sh BIN COMMAND...
# Runs COMMAND with a stripe-mock (BIN) listening on a free port and
# STRIPE_MOCK_URL pointing at it; stops it afterwards, also when COMMAND
# fails or is interrupted. With STRIPE_MOCK_URL already set, just runs
# COMMAND.
set -euo pipefail
bin=$1
shift
if [ -n "${STRIPE_MOCK_URL:-}" ]; then
	exec "$@"
fi
log=$(mktemp)
"$bin" -http-port 0 >"$log" 2>&1 &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Loading Stripe's OpenAPI specification takes seconds on a busy machine.
port=
for _ in $(seq 1 1200); do
	port=$(sed -n 's/^Listening for HTTP at address: .*:\([0-9][0-9]*\)$/\1/p' "$log")
	[ -n "$port" ] && break
	if ! kill -0 "$pid" 2>/dev/null; then
		cat "$log" >&2
		echo "stripe-mock exited before listening" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "stripe-mock not listening after 2 minutes" >&2
	exit 1
fi
export STRIPE_MOCK_URL="http://127.0.0.1:$port"
echo "stripe-mock listening on $STRIPE_MOCK_URL" >&2
"$@"
