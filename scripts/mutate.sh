#!/usr/bin/env bash
# Usage: scripts/mutate.sh GREMLINS [PKGDIR...]
# Mutation testing (github.com/go-gremlins/gremlins) of the pure packages:
# each package is mutated on its own and judged by its own tests only
# (subdirectories are other packages, so excluded), none needs a database.
# Prints, per package, the counts and the efficacy (killed / (killed +
# lived)) and mutant coverage (covered / all); the surviving (LIVED)
# mutants are listed after the table. Full logs in bin/mutate/.
#
# Bounded on a small machine: MUTATE_WORKERS workers (default 2), each test
# run allowed MUTATE_TIMEOUT_COEF times the coverage run's time (default 10:
# a shared machine is slow, and a spurious timeout hides a live mutant).
# -count=1: a cached coverage run takes milliseconds, and so would the
# timeout derived from it. -vet=off: go vet is `make lint`'s job, and it
# would run again for every mutant.
# Run under scripts/with-stripe-mock.sh so adapters/stripe's client tests
# run against stripe-mock instead of skipping.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
gremlins=$1
shift
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(domain domain/app domain/app/apptest domain/eventlog projections adapters/stripe)
fi
workers=${MUTATE_WORKERS:-2}
coef=${MUTATE_TIMEOUT_COEF:-10}
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1 -vet=off"
logs=$root/bin/mutate
mkdir -p "$logs"
cd "$root"

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
printf '%-20s %7s %6s %5s %11s %9s %10s %9s %8s\n' package mutants killed lived "not covered" "timed out" "not viable" efficacy coverage >"$summary"

# count LABEL LOG: the number after "LABEL:" in gremlins' closing lines.
count() { sed -n "s/.*$1: \([0-9][0-9]*\).*/\1/p" "$2" | tail -1; }
percent() { sed -n "s/^$1: \([0-9.]*\)%.*/\1/p" "$2" | tail -1; }

for p in "${pkgs[@]}"; do
	log=$logs/$(echo "$p" | tr / _).log
	echo "== $p (log: ${log#"$root"/})"
	# --exclude-files '/': paths are relative to the package's directory,
	# so this keeps the package's own files and drops its subpackages.
	"$gremlins" unleash --workers "$workers" --timeout-coefficient "$coef" \
		--exclude-files '/' --output "$logs/$(echo "$p" | tr / _).json" \
		"$p" >"$log" 2>&1 || { cat "$log"; echo "gremlins failed on $p" >&2; exit 1; }
	k=$(count Killed "$log"); l=$(count Lived "$log"); n=$(count "Not covered" "$log")
	t=$(count "Timed out" "$log"); v=$(count "Not viable" "$log")
	printf '%-20s %7s %6s %5s %11s %9s %10s %8s%% %7s%%\n' "$p" "$((k + l + n + t + v))" "$k" "$l" "$n" "$t" "$v" \
		"$(percent "Test efficacy" "$log")" "$(percent "Mutator coverage" "$log")" >>"$summary"
done

echo
cat "$summary"
echo
echo "Surviving mutants (LIVED):"
for p in "${pkgs[@]}"; do
	grep -h ' LIVED ' "$logs/$(echo "$p" | tr / _).log" | sed "s|at |at $p/|" || true
done
