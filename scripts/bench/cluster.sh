# cluster.sh: `scripts/bench.sh cluster` (sourced by bench.sh; uses lib.sh).
#
# On a fresh three-host dev cluster (scripts/dev-cluster.sh with its own prefix bn, subnet 10.78.0.0/24, bridge
# bnbr and directory, so it never meets a developer's cluster) with the agents' DEFAULT timeouts:
#   1. leader failover, BENCH_FAILOVER_ROUNDS (5) times: kill -9 the leader's agent, then from another host retry
#      a write (`ferry run`) every 50 ms for at most 30 s; kill to the write's success is the failover time.
#      The killed agent is restarted (`dev-cluster.sh up`) and seen alive before the next round.
#   2. `ferry run` end to end, BENCH_RUNS (10) times, then `ferry rm --force` of what the benchmark made.
#   3. the FSM at scale through the Go benchmarks of package cluster (cluster/bench_test.go): apply rate through
#      raft with the on-disk stores, one writer and concurrent writers; FSM snapshot, restore, size and heap.
# Targets (issue 3): failover < 3 s (median and max); >= 2,000 applied commands/s with the 1,000-container state.

CL_PREFIX=bn
CL_DIR=/tmp/ferry-bench-cluster
CL_HOSTS=(bn-1 bn-2 bn-3)

# cl_script ARG: scripts/dev-cluster.sh with the benchmark's own settings (never the caller's FERRY_DEV_*).
cl_script() {
	FERRY_DEV_HOSTS=3 FERRY_DEV_PREFIX=$CL_PREFIX FERRY_DEV_NET=10.78.0 FERRY_DEV_BRIDGE=bnbr \
		FERRY_DEV_DIR=$CL_DIR FERRY_DEV_PORT=7400 FERRY_DEV_AGENT_FLAGS= FERRY_BIN=$BENCH_BIN \
		bash "$BENCH_ROOT/scripts/dev-cluster.sh" "$1"
}

# cl_ferry HOST ARGS...: the command line against HOST's agent.
cl_ferry() {
	local host=$1
	shift
	"$BENCH_BIN" --addr "unix://$CL_DIR/$host/ferry.sock" "$@"
}

cl_down() {
	if [ "${BENCH_STATUS:-0}" -ne 0 ] && [ -d "$CL_DIR" ]; then # keep the agents' logs of a failed run
		mkdir -p "$BENCH_RESULTS/cluster-failed-logs"
		cp "$CL_DIR"/*.log "$BENCH_TMP/cluster-dev.log" "$BENCH_RESULTS/cluster-failed-logs/" 2>/dev/null || true
		bench_log "agent logs of the failed run kept in $BENCH_RESULTS/cluster-failed-logs/"
	fi
	cl_script down >>"$BENCH_TMP/cluster-dev.log" 2>&1 || bench_log "dev-cluster.sh down failed; see above"
	local left
	left=$(ip netns list 2>/dev/null | grep -E "^$CL_PREFIX-[0-9]+" || true)
	[ -z "$left" ] || bench_log "namespaces left after down: $left"
}

# cl_roles HOST: "NAME ROLE STATUS" lines of HOST's `node ls -o json`.
cl_roles() {
	cl_ferry "$1" node ls -o json | python3 -c '
import json, sys
for n in (json.load(sys.stdin) or []):
    print(n["name"], n.get("raft_role") or "none", n.get("status") or "unknown")'
}

# cl_leader: the leader that every running host names (fails if they disagree or one has none).
cl_leader() {
	local h l agreed=
	for h in "${CL_HOSTS[@]}"; do
		l=$(cl_roles "$h" | awk '$2 == "leader" {print $1}') || return 1
		[ -n "$l" ] || return 1
		[ -z "$agreed" ] || [ "$agreed" = "$l" ] || return 1
		agreed=$l
	done
	echo "$agreed"
}

# cl_alive HOST: HOST answers on its socket and every host lists it alive.
cl_alive() {
	local h
	for h in "${CL_HOSTS[@]}"; do
		cl_roles "$h" | awk -v n="$1" '$1 == n && $3 == "alive" {f = 1} END {exit !f}' || return 1
	done
}

cl_up() {
	bench_log "cluster: starting hosts ${CL_HOSTS[*]} (dev-cluster.sh up, default timeouts) in $CL_DIR"
	cl_down # a run that crashed before its trap may have left its cluster behind
	bench_on_exit cl_down
	cl_script up >>"$BENCH_TMP/cluster-dev.log" 2>&1 || { cat "$BENCH_TMP/cluster-dev.log" >&2; bench_die "dev-cluster.sh up failed"; }
	bench_wait 60 "a leader all three hosts agree on" cl_leader >/dev/null || bench_die "the bench cluster has no leader"
	local h
	for h in "${CL_HOSTS[@]}"; do bench_wait 60 "$h alive everywhere" cl_alive "$h" || bench_die "$h is not alive"; done
	bench_log "cluster: up; importing busybox on each host"
	bash "$BENCH_ROOT/scripts/busybox-image.sh" "$BENCH_TMP/busybox.tar"
	for h in "${CL_HOSTS[@]}"; do
		cl_ferry "$h" image import busybox "$BENCH_TMP/busybox.tar" >/dev/null 2>&1 || bench_die "image import on $h failed"
	done
}

# cl_failover_round N: one kill of the leader; prints the failover time in ms (or fails).
cl_failover_round() {
	local i=$1 leader writer pid t0 t1 deadline now left err tries=0 refusals=()
	leader=$(bench_wait 60 "a leader all three hosts agree on" cl_leader) || return 1
	for writer in "${CL_HOSTS[@]}"; do [ "$writer" != "$leader" ] && break; done
	pid=$(cat "$CL_DIR/$leader.pid")
	kill -0 "$pid" || { bench_log "no agent at pid $pid for $leader"; return 1; }
	t0=$(bench_now_ms)
	kill -9 "$pid"
	deadline=$((t0 + 30000))
	while :; do
		tries=$((tries + 1))
		now=$(bench_now_ms)
		left=$((deadline - now))
		[ "$left" -gt 0 ] || { bench_log "round $i: no write succeeded within 30 s of killing $leader: $err"; return 1; }
		if err=$(timeout "$((left / 1000)).$(printf %03d $((left % 1000)))" \
			"$BENCH_BIN" --addr "unix://$CL_DIR/$writer/ferry.sock" run --name "fo-$i" busybox -- sleep 100000 2>&1 >/dev/null); then
			t1=$(bench_now_ms)
			break
		fi
		# An attempt that failed after its write was committed (leadership lost mid-write) leaves the
		# container; its retry is then refused as a duplicate, and the write has in fact been served.
		if grep -qi "fo-$i" <<<"$err" && cl_ferry "$writer" ps -o json 2>/dev/null | grep -q "\"fo-$i\""; then
			t1=$(bench_now_ms)
			bench_note "failover round $i: the write landed on a try that reported an error ($err)"
			break
		fi
		refusals+=("$(head -n1 <<<"$err")")
		sleep 0.05
	done
	[ ${#refusals[@]} -eq 0 ] || bench_log "round $i: writes refused meanwhile with: $(printf '%s\n' "${refusals[@]}" | sort | uniq -c | sed 's/^ *//' | paste -sd';')"
	bench_log "round $i: killed leader $leader (pid $pid); a write from $writer succeeded after $((t1 - t0)) ms, try $tries"
	echo "$((t1 - t0)) $leader $tries"
	# Bring the killed agent back and wait until every host sees it alive, so the next round starts whole.
	cl_script up >>"$BENCH_TMP/cluster-dev.log" 2>&1 || { bench_log "dev-cluster.sh up (restart of $leader) failed"; return 1; }
	bench_wait 60 "$leader alive again" cl_alive "$leader" >/dev/null || return 1
}

cl_failover() {
	local rounds=${BENCH_FAILOVER_ROUNDS:-5} i line a b c ms=() killed=() tries=()
	bench_log "cluster: leader failover, $rounds rounds"
	for i in $(seq "$rounds"); do
		line=$(cl_failover_round "$i" | tail -n1) || bench_die "failover round $i failed (agent logs in $CL_DIR/*.log)"
		read -r a b c <<<"$line"
		ms+=("$a") killed+=("$b") tries+=("$c")
	done
	bench_figure failover_min_ms "leader failover, min (kill -9 to a write served)" "$(bench_stat min "${ms[@]}")" ms
	bench_figure failover_median_ms "leader failover, median" "$(bench_stat median "${ms[@]}")" ms "<3000"
	bench_figure failover_max_ms "leader failover, max" "$(bench_stat max "${ms[@]}")" ms "<3000"
	bench_samples failover_ms ms "${ms[@]}"
	bench_note "failover: $rounds rounds, default timeouts; killed leaders: ${killed[*]}; write tries per round: ${tries[*]}"
}

cl_runs() {
	local runs=${BENCH_RUNS:-10} i t0 t1 ms=() h=${CL_HOSTS[0]}
	bench_log "cluster: ferry run end to end, $runs runs"
	for i in $(seq "$runs"); do
		t0=$(bench_now_ms)
		cl_ferry "$h" run --name "r-$i" busybox -- sleep 100000 >/dev/null || bench_die "ferry run r-$i failed"
		t1=$(bench_now_ms)
		ms+=($((t1 - t0)))
	done
	bench_figure run_median_ms "ferry run end to end, median" "$(bench_stat median "${ms[@]}")" ms
	bench_figure run_p90_ms "ferry run end to end, p90" "$(bench_stat p90 "${ms[@]}")" ms
	bench_samples run_ms ms "${ms[@]}"
	local placed
	placed=$(cl_ferry "$h" ps -o json | python3 -c '
import collections, json, sys
c = collections.Counter(x["node"] for x in (json.load(sys.stdin) or []) if x["config"]["name"].startswith("r-"))
print(", ".join(f"{n} {k}" for n, k in sorted(c.items())))' 2>/dev/null || echo unknown)
	bench_note "ferry run: $runs runs of busybox 'sleep 100000' sent to ${CL_HOSTS[0]}, placed by the leader: $placed"
	local name
	for name in $(cl_ferry "$h" ps -o json | python3 -c '
import json, sys
print(" ".join(x["config"]["name"] for x in (json.load(sys.stdin) or [])))'); do
		cl_ferry "$h" rm --force "$name" >/dev/null || bench_log "ferry rm --force $name failed"
	done
}

# cl_gobench PATTERN BENCHTIME: runs the Go benchmarks matching PATTERN; prints "NAME UNIT VALUE" lines.
cl_gobench() {
	local out=$BENCH_TMP/gobench-$RANDOM.txt
	(cd "$BENCH_ROOT/cluster" && "$BENCH_TMP/cluster.test" -test.run '^$' -test.bench "$1" -test.benchtime "$2") >"$out" 2>&1 \
		|| { cat "$out" >&2; bench_die "go benchmarks $1 failed"; }
	cat "$out" >>"$BENCH_TMP/gobench.log"
	python3 - "$out" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    f = line.split()
    if not f or not f[0].startswith("Benchmark") or len(f) < 4:
        continue
    name = re.sub(r"-\d+$", "", f[0])
    for i in range(2, len(f) - 1, 2):
        print(name, f[i + 1], f[i])
PY
}

# cl_pick FILE NAME UNIT: the value of UNIT for benchmark NAME in cl_gobench's output.
cl_pick() {
	awk -v n="$2" -v u="$3" '$1 == n && $2 == u {print $3; f = 1} END {exit !f}' "$1" || bench_die "no $3 for $2 in the benchmark output"
}

cl_fsm() {
	local f=$BENCH_TMP/gobench.parsed w
	bench_log "cluster: Go benchmarks (1,000 containers, 10,000 snapshot records)"
	{
		cl_gobench '^BenchmarkClusterApply$' "${BENCH_APPLY_N:-3000}x"
		cl_gobench '^BenchmarkClusterFSM(Snapshot|Restore)$' 30x
		cl_gobench '^BenchmarkClusterFSMApply$' 20000x
	} >"$f"
	for w in 1 8 64; do
		bench_figure "apply_rate_writers_$w" "apply rate, raft + bbolt on disk, $w writer(s)" \
			"$(cl_pick "$f" "BenchmarkClusterApply/writers=$w" cmds/s | cut -d. -f1)" cmds/s ">=2000"
	done
	bench_figure fsm_snapshot_ms "FSM snapshot (Snapshot + Persist)" \
		"$(python3 -c "print(round($(cl_pick "$f" BenchmarkClusterFSMSnapshot ns/op) / 1e6, 1))")" ms
	bench_figure fsm_snapshot_bytes "FSM snapshot size" "$(cl_pick "$f" BenchmarkClusterFSMSnapshot snapshot-bytes)" bytes
	bench_figure fsm_restore_ms "FSM restore" \
		"$(python3 -c "print(round($(cl_pick "$f" BenchmarkClusterFSMRestore ns/op) / 1e6, 1))")" ms
	bench_figure state_heap_inuse_bytes "heap in use for the state" \
		"$(cl_pick "$f" BenchmarkClusterFSMSnapshot state-heap-inuse-bytes)" bytes
	bench_figure state_heap_live_bytes "live heap bytes of the state" \
		"$(cl_pick "$f" BenchmarkClusterFSMSnapshot state-heap-live-bytes)" bytes
	bench_baseline fsm_apply_alone "FSM apply alone (no raft, no disk)" \
		"$(cl_pick "$f" BenchmarkClusterFSMApply cmds/s | cut -d. -f1)" cmds/s
	bench_note "FSM figures: state of 5 nodes, 1,000 containers, 10,000 snapshot records; apply = UpdateContainer (desired state) round-robin; ${BENCH_APPLY_N:-3000} commands per writer count, single node, bbolt log store synced per batch"
}

bench_cluster() {
	[ "$(id -u)" -eq 0 ] || bench_die "the cluster benchmark makes network namespaces and runs agents: run it as root"
	bench_begin cluster
	cl_up
	cl_failover
	cl_runs
	# The run benchmark's median is the latency of a write on a healthy cluster: the failover's baseline.
	bench_baseline healthy_write_ms "ferry run on a healthy cluster (median, the failover's baseline)" \
		"$(awk -F'\t' '$2 == "run_median_ms" {print $4}' "$BENCH_REC")" ms
	cl_fsm
	bench_finish
}
