#!/usr/bin/env bash
# bench.sh cluster|transfer|migrate|clone|drain|all: Ferry's benchmarks.
#
# Each prints a table on stdout and writes bench-results/NAME-TIMESTAMP.json and bench-results/NAME-latest.json:
# the machine, the date, every figure with its unit, the targets and whether each was met, and the baseline measured
# in the same run. Progress and logs go to stderr. It installs what it needs first (scripts/install-deps.sh), builds
# the ferry binary once into a temporary directory, and removes at exit all it made (its own dev cluster too).
#
# Exit status: 0 when the benchmarks ran (a missed target is reported, not an error, unless BENCH_STRICT=1, which
# makes it 1); 1 when one could not run; 2 on a usage error or a benchmark that is not implemented yet asked alone.
# Settings: BENCH_FAILOVER_ROUNDS (5), BENCH_RUNS (10), BENCH_APPLY_N (3000 commands per writer count),
# BENCH_TRANSFER_RUNS (3), BENCH_MIGRATE_SIZES ("64 256 1024" MiB), BENCH_MIGRATE_RUNS (2), BENCH_CLONE_KEYS (4000000),
# BENCH_DRAIN_ALONE_RUNS (2), BENCH_STRICT, BENCH_RESULTS (bench-results/ of this checkout).
#
# Each benchmark is a function bench_NAME in scripts/bench/NAME.sh; scripts/bench/lib.sh holds the shared helpers.
set -euo pipefail
BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin
source "$BENCH_ROOT/scripts/bench/lib.sh"
source "$BENCH_ROOT/scripts/bench/cluster.sh"
source "$BENCH_ROOT/scripts/bench/transfer.sh"
source "$BENCH_ROOT/scripts/bench/migrate.sh"
source "$BENCH_ROOT/scripts/bench/clone.sh"
source "$BENCH_ROOT/scripts/bench/drain.sh"

all=(cluster transfer migrate clone drain)
usage() { echo "usage: bench.sh cluster|transfer|migrate|clone|drain|all" >&2; exit 2; }

# pending NAME: the issue a benchmark that is not implemented yet comes with, or nothing.
pending() {
	case $1 in
	esac
}

[ $# -eq 1 ] || usage
case $1 in
all) todo=("${all[@]}") ;;
cluster | transfer | migrate | clone | drain) todo=("$1") ;;
*) usage ;;
esac
if [ ${#todo[@]} -eq 1 ] && [ -n "$(pending "$1")" ]; then
	echo "not implemented yet: $1 (comes with the $(pending "$1") work)" >&2
	exit 2
fi

[ "$(id -u)" -eq 0 ] || bench_die "run as root (it installs packages and makes network namespaces); try: sudo $0 $1"
# One bench.sh at a time: the cluster benchmark's namespaces, subnet and directory are fixed. (A pid file, not
# flock: an inherited lock descriptor would reach the agents and containers and make CRIU refuse to dump them.)
lock=/run/ferry-bench.pid
if [ -s "$lock" ] && kill -0 "$(cat "$lock")" 2>/dev/null; then bench_die "another bench.sh (pid $(cat "$lock")) is running"; fi
echo $$ >"$lock"
trap 'BENCH_STATUS=$?; bench_run_exit_hooks' EXIT
bench_on_exit 'rm -f "$lock"'
BENCH_TMP=$(mktemp -d /tmp/ferry-bench-tmp.XXXXXX)
bench_on_exit 'rm -rf "$BENCH_TMP"'
trap 'exit 130' INT TERM

bash "$BENCH_ROOT/scripts/install-deps.sh" >&2
# Benchmark-only baselines and tools, from Debian's packages (the agent needs none of them).
bench_pkgs=()
for p in podman socat openssh-server curl; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || bench_pkgs+=("$p")
done
if [ ${#bench_pkgs[@]} -gt 0 ]; then
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bench_pkgs[@]}" >/dev/null \
		|| { echo "bench.sh: apt-get install ${bench_pkgs[*]} failed" >&2; exit 1; }
	echo "bench.sh: installed ${bench_pkgs[*]}" >&2
fi
bench_log "building ferry and the cluster package's benchmarks into $BENCH_TMP"
(cd "$BENCH_ROOT" && go build -o "$BENCH_TMP/ferry" ./cmd/ferry && go test -c -o "$BENCH_TMP/cluster.test" ./cluster/) >&2 \
	|| bench_die "build failed"
BENCH_BIN=$BENCH_TMP/ferry

missed=
for name in "${todo[@]}"; do
	if [ -n "$(pending "$name")" ]; then
		echo "not implemented yet: $name (comes with the $(pending "$name") work)"
		continue
	fi
	# A bench function that stops on a shell error returns non-zero, and the script would go on.
	"bench_$name" || bench_die "the $name benchmark stopped early (see the error above)"
	missed+=$BENCH_MISSED
	echo
done
if [ -n "$missed" ] && [ "${BENCH_STRICT:-}" = 1 ]; then exit 1; fi
exit 0
