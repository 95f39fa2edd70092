#!/usr/bin/env bash
# Applies each of the known one-line mutants M1-M4 (issue 19) to a scratch
# copy of the working tree and runs the test named to catch it: the test
# must pass on the clean copy and fail on the mutated one. Prints CAUGHT or
# SURVIVED per mutant; exits non-zero if any survived (or a sed matched
# nothing, or a test failed on the clean copy).
#
# Needs TEST_DATABASE_URL (see README); `make mutants` sets it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}

# One mutant a line: label % file % sed expression % test pattern % package
# (fields split on %, which none of them contains).
# When the packages move, update the file and package columns.
mutants=$(cat <<'LIST'
M1 % projections/monitoring.go % s/\[\]int64{0, 0, 1, ev\.Amount}/[]int64{0, 0, 1, 0}/ % ^TestMonitoringAgainstHandWrittenTables$ % ./adapters/postgres/readmodels/
M2 % adapters/postgres/audit/history.go % /!asOf\.IsZero() && e\.RecordedAt\.After(asOf) {/{n;s/\tbreak$/\tcontinue/} % ^TestBookingAsOfWhenTheClockWentBackwards$ % ./adapters/postgres/audit/
M3 % cmd/ledger/app.go % /^func (a \*App) Close() error {$/a\	if a.db != nil { a.db.Close() } % ^(TestAppCloseLetsARequestInsideTheDatabaseFinish|TestServeSIGTERMWithARequestInTheDatabase)$ % ./cmd/ledger/
M4 % adapters/postgres/readmodels/rebuild_bookings.go % s/len(differing) <= r\.cfg\.PatchLimit {/len(differing) <= r.cfg.PatchLimit+1 {/ % ^TestRebuildBookingsAtThePatchLimit$ % ./adapters/postgres/readmodels/
LIST
)

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ledger-mutants.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# The working tree as it is (committed or not), without .git and bin/.
(cd "$root" && tar --exclude=./.git --exclude=./bin -cf - .) | tar -xf - -C "$scratch"

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

survived=0
while IFS='%' read -r label file expr pattern pkg; do
	label=$(trim "$label"); file=$(trim "$file"); expr=$(trim "$expr"); pattern=$(trim "$pattern"); pkg=$(trim "$pkg")
	[ -n "$label" ] || continue
	target="$scratch/$file"
	if [ ! -f "$target" ]; then
		echo "$label: $file does not exist (moved? update scripts/mutants.sh)" >&2
		exit 2
	fi
	if ! (cd "$scratch" && $GO test -count=1 -run "$pattern" "$pkg" >"$scratch/$label.clean.log" 2>&1); then
		echo "$label: the test fails WITHOUT the mutant; fix it first:" >&2
		cat "$scratch/$label.clean.log" >&2
		exit 2
	fi
	cp "$target" "$target.orig"
	sed -i -e "$expr" "$target"
	if cmp -s "$target" "$target.orig"; then
		echo "$label: sed matched nothing in $file (the code changed? update scripts/mutants.sh)" >&2
		exit 2
	fi
	if (cd "$scratch" && $GO test -count=1 -run "$pattern" "$pkg" >"$scratch/$label.log" 2>&1); then
		echo "$label SURVIVED ($file; $pattern in $pkg)"
		survived=1
	else
		first=$(grep -m1 -E '^\s+[a-z_]+_test\.go:[0-9]+:' "$scratch/$label.log" | sed 's/^[[:space:]]*//' || true)
		echo "$label CAUGHT ($pattern): ${first:-see the test output}"
	fi
	mv "$target.orig" "$target"
done <<<"$mutants"
exit $survived
