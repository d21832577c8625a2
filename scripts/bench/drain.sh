# drain.sh: `scripts/bench.sh drain` (sourced by bench.sh; uses lib.sh).
#
# On a fresh three-host dev cluster (scripts/dev-cluster.sh with its own prefix bd, subnet 10.71.0.0/24, bridge
# bdbr and directory), with the workload `memload -mib 64 -interval 100ms -sum-every 50` (64 MiB each), in one run:
#   1. Reference: each of the six containers of the --max-parallel 1 drain below, on bd-1 with the other five
#      running beside it, migrated alone (`ferry migrate --mode stop-copy -o json`) off bd-1 as the drain moves
#      it, to bd-2 and to bd-3 in turn (BENCH_DRAIN_ALONE_RUNS, 2, moves each; after each, a move back to bd-1
#      that is not counted): its downtime as reported (median) and as the workload saw it (the biggest gap
#      between its t= stamps).
#   Each measured move and each drain starts after BENCH_DRAIN_SETTLE (3) seconds without other work, so that
#   none of them shares the cores with what the one before left running (a lazy restore's background fill).
#   2. Ferry's drain: six such containers on bd-1, `ferry node drain bd-1 --max-parallel 1 -o json`, then the
#      same again (fresh containers) with --max-parallel 3: the time of each drain, and each container's
#      downtime from the drain's report and from its own output.
#   3. A stop-and-start evacuation (Nomad's way) of six fresh such containers: for each, `ferry stop` and `ferry
#      rm` on bd-1, then `ferry run` anew on bd-2 or bd-3: how long each was away (stop .. its new copy's ready
#      line) and what it lost (its tick counter restarts: the ticks it had counted are gone).
# Beside each drain's time, the CPU time the whole machine used during it (/proc/stat, all processes) and that
# time divided by the machine's CPUs: the least time that work can take here.
# Targets (issue 7): the drain with --max-parallel 3 takes at most 0.7 of the time of --max-parallel 1; with
# --max-parallel 1, no container's downtime exceeds that of the same container migrated alone by more than 20%
# (each container's drain downtime against its own reference median; the worst ratio is the figure).

BD_PREFIX=bd
BD_DIR=/tmp/ferry-bench-drain
BD_HOSTS=(bd-1 bd-2 bd-3)
BD_N=6

bd_script() {
	FERRY_DEV_HOSTS=3 FERRY_DEV_PREFIX=$BD_PREFIX FERRY_DEV_NET=10.71.0 FERRY_DEV_BRIDGE=bdbr \
		FERRY_DEV_DIR=$BD_DIR FERRY_DEV_PORT=7400 FERRY_DEV_AGENT_FLAGS= FERRY_BIN=$BENCH_BIN \
		bash "$BENCH_ROOT/scripts/dev-cluster.sh" "$1"
}

bd_ferry() {
	local host=$1
	shift
	"$BENCH_BIN" --addr "unix://$BD_DIR/$host/ferry.sock" "$@"
}

bd_down() {
	if [ "${BENCH_STATUS:-0}" -ne 0 ] && [ -d "$BD_DIR" ]; then
		mkdir -p "$BENCH_RESULTS/drain-failed-logs"
		cp "$BD_DIR"/*.log "$BENCH_TMP/drain-dev.log" "$BENCH_TMP/bd-drain.log" "$BENCH_RESULTS/drain-failed-logs/" 2>/dev/null || true
		bench_log "agent logs of the failed run kept in $BENCH_RESULTS/drain-failed-logs/"
	fi
	bd_script down >>"$BENCH_TMP/drain-dev.log" 2>&1 || bench_log "dev-cluster.sh down failed; see above"
	local left
	left=$(ip netns list 2>/dev/null | grep -E "^$BD_PREFIX-[0-9]+" || true)
	[ -z "$left" ] || bench_log "namespaces left after down: $left"
}

bd_alive_all() {
	bd_ferry "${BD_HOSTS[0]}" node ls -o json | python3 -c '
import json, sys
nodes = {x["name"]: x.get("status") for x in (json.load(sys.stdin) or [])}
sys.exit(0 if all(nodes.get(h) == "alive" for h in sys.argv[1:]) else 1)' "${BD_HOSTS[@]}"
}

bd_up() {
	bench_log "drain: starting hosts ${BD_HOSTS[*]} in $BD_DIR"
	bd_down
	bench_on_exit bd_down
	bd_script up >>"$BENCH_TMP/drain-dev.log" 2>&1 || { cat "$BENCH_TMP/drain-dev.log" >&2; bench_die "dev-cluster.sh up failed"; }
	bench_wait 60 "all drain hosts alive" bd_alive_all || bench_die "the drain hosts are not all alive"
	local h
	for h in "${BD_HOSTS[@]}"; do
		bd_ferry "$h" image import busybox "$BD_IMAGE_TAR" >/dev/null 2>&1 || bench_die "image import on $h failed"
	done
}

# bd_ready NAME: NAME's log has its ready line.
bd_ready() { bd_ferry "${BD_HOSTS[0]}" logs "$1" 2>/dev/null | grep -q '^ready'; }

# bd_run NAME NODE: a 64 MiB workload NAME on NODE, waited for until ready.
bd_run() {
	bd_ferry "${BD_HOSTS[0]}" run --name "$1" --node "$2" --memory 256m busybox -- \
		/bin/memload -mib 64 -interval 100ms -sum-every 50 >/dev/null || bench_die "ferry run $1 on $2 failed"
	bench_wait 120 "$1 ready" bd_ready "$1" || bench_die "$1 never printed ready"
}

# bd_gap START_MS END_MS: the biggest gap (ms) between the t= stamps of stdin that overlaps [START, END].
bd_gap() {
	python3 -c '
import re, sys
start, end = int(sys.argv[1]) * 1000, int(sys.argv[2]) * 1000
ts = sorted(set(int(m.group(1)) for m in re.finditer(r"\bt=(\d+)", sys.stdin.read())))
gaps = [b - a for a, b in zip(ts, ts[1:]) if b >= start and a <= end]
print(round(max(gaps) / 1000, 1) if gaps else "none")' "$1" "$2"
}

# bd_ticked NAME N: NAME's log has a tick at or above N.
bd_ticked() {
	bd_ferry "${BD_HOSTS[0]}" logs "$1" 2>/dev/null | python3 -c '
import re, sys
ticks = [int(m.group(1)) for m in re.finditer(r"^tick=(\d+)", sys.stdin.read(), re.M)]
sys.exit(0 if ticks and max(ticks) >= int(sys.argv[1]) else 1)' "$2"
}

# bd_last_tick NAME: the last tick NAME's log shows (0 if none).
bd_last_tick() {
	bd_ferry "${BD_HOSTS[0]}" logs "$1" 2>/dev/null | python3 -c '
import re, sys
ticks = [int(m.group(1)) for m in re.finditer(r"^tick=(\d+)", sys.stdin.read(), re.M)]
print(max(ticks) if ticks else 0)'
}

# bd_ticks_lost NAME: how many of NAME's ticks are missing from its log (a counter that restarted counts all it
# had reached): 0 when the counter went on unbroken across the move.
bd_ticks_lost() {
	bd_ferry "${BD_HOSTS[0]}" logs "$1" 2>/dev/null | python3 -c '
import re, sys
ticks = [int(m.group(1)) for m in re.finditer(r"^tick=(\d+)", sys.stdin.read(), re.M)]
lost, prev = 0, 0
for t in ticks:
    if t <= prev:
        lost += prev   # restarted: everything it had counted is gone
    elif t > prev + 1:
        lost += t - prev - 1
    prev = t
print(lost)'
}

bd_json() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# bd_settle: a pause without other work before a measured move or drain (BENCH_DRAIN_SETTLE seconds).
bd_settle() { sleep "${BENCH_DRAIN_SETTLE:-3}"; }

# bd_alone NAME: the reference: NAME (one of the six on bd-1, the others running beside it) migrated alone off
# bd-1, to bd-2 and bd-3 in turn, BENCH_DRAIN_ALONE_RUNS (2) times, each time moved back to bd-1 after (not
# counted); sets BD_ALONE_DOWN_OF[NAME] and BD_ALONE_GAP_OF[NAME] (medians) and adds the samples to
# BD_ALONE_DOWNS and BD_ALONE_GAPS.
bd_alone() {
	local name=$1 r src dst t0 t1 rep down=() gaps=()
	bench_log "drain: reference, $name migrated alone (the other five running beside it)"
	for r in $(seq "${BENCH_DRAIN_ALONE_RUNS:-2}"); do
		src=${BD_HOSTS[0]} dst=${BD_HOSTS[$((1 + (r - 1) % 2))]}
		rep=$BENCH_TMP/bd-alone-$r.json
		bench_wait 20 "$name ticking" bd_ticked "$name" $(($(bd_last_tick "$name") + 10)) || true
		bd_settle
		t0=$(bench_now_ms)
		bd_ferry "${BD_HOSTS[0]}" migrate "$name" "$src" "$dst" --mode stop-copy -o json >"$rep" 2>>"$BENCH_TMP/bd-drain.log" ||
			{ cat "$rep" >&2; bench_die "ferry migrate $name $src $dst failed"; }
		t1=$(bench_now_ms)
		bench_wait 30 "$name going on" bd_ticked "$name" $(($(bd_last_tick "$name") + 5)) >/dev/null || bench_die "$name did not go on"
		down+=("$(bd_json "$rep" 'round(d["downtime"] / 1e6, 1)')")
		gaps+=("$(bd_ferry "${BD_HOSTS[0]}" logs "$name" | bd_gap "$t0" "$t1")")
		bench_log "drain: alone $src -> $dst: downtime ${down[-1]} ms, workload gap ${gaps[-1]} ms"
		bd_ferry "${BD_HOSTS[0]}" migrate "$name" "$dst" "$src" --mode stop-copy -o json >/dev/null 2>>"$BENCH_TMP/bd-drain.log" ||
			bench_die "ferry migrate $name $dst $src (back) failed"
		bench_wait 30 "$name going on" bd_ticked "$name" $(($(bd_last_tick "$name") + 5)) >/dev/null || bench_die "$name did not go on"
	done
	[ "$(bd_ferry "${BD_HOSTS[0]}" ps -o json | bd_where "$name")" = "${BD_HOSTS[0]}" ] ||
		bench_die "$name is not back on ${BD_HOSTS[0]} after its reference moves"
	BD_ALONE_DOWN_OF[$name]=$(bench_stat median "${down[@]}")
	BD_ALONE_GAP_OF[$name]=$(bench_stat median "${gaps[@]}")
	BD_ALONE_DOWNS+=("${down[@]}")
	BD_ALONE_GAPS+=("${gaps[@]}")
}

# bd_where NAME: the node of NAME in the ps -o json on stdin.
bd_where() { python3 -c 'import json, sys; print(next((c["node"] for c in json.load(sys.stdin) if c["config"]["name"] == sys.argv[1]), ""))' "$1"; }

# bd_drain P: six fresh workloads on bd-1 drained with --max-parallel P; sets BD_TOOK[P], BD_DOWN_MAX[P],
# BD_DOWN_MED[P], BD_GAP_MAX[P], BD_SPREAD[P].
bd_drain() {
	local p=$1 i name t0 t1 rep=$BENCH_TMP/bd-drain-$p.json down=() gaps=() lost=()
	bench_log "drain: $BD_N containers of 64 MiB on ${BD_HOSTS[0]}, --max-parallel $p"
	for i in $(seq "$BD_N"); do bd_run "p$p-$i" "${BD_HOSTS[0]}"; done
	for i in $(seq "$BD_N"); do
		bench_wait 30 "p$p-$i ticking" bd_ticked "p$p-$i" 20 >/dev/null || true
	done
	if [ "$p" = 1 ]; then
		for i in $(seq "$BD_N"); do bd_alone "p$p-$i"; done
		BD_ALONE_DOWN=$(bench_stat median "${BD_ALONE_DOWNS[@]}")
		BD_ALONE_GAP=$(bench_stat median "${BD_ALONE_GAPS[@]}")
		bench_samples alone_downtime_ms ms "${BD_ALONE_DOWNS[@]}"
		bench_samples alone_gap_ms ms "${BD_ALONE_GAPS[@]}"
	fi
	local cpu0 cpu1 b0 b1
	bd_settle
	cpu0=$(bench_cpu_ticks)
	t0=$(bench_now_ms)
	bd_ferry "${BD_HOSTS[1]}" node drain "${BD_HOSTS[0]}" --max-parallel "$p" -o json >"$rep" 2>>"$BENCH_TMP/bd-drain.log" ||
		{ cat "$rep" >&2; bench_die "ferry node drain --max-parallel $p failed (see $BENCH_TMP/bd-drain.log)"; }
	t1=$(bench_now_ms)
	cpu1=$(bench_cpu_ticks)
	BD_CPU[$p]=$(bench_cpu_busy "$cpu0" "$cpu1")
	read -r b0 _ <<<"$cpu0"
	read -r b1 _ <<<"$cpu1"
	BD_CPU_MS[$p]=$(((b1 - b0) * 1000 / $(getconf CLK_TCK)))
	for i in $(seq "$BD_N"); do
		name=p$p-$i
		bench_wait 30 "$name going on" bd_ticked "$name" $(($(bd_last_tick "$name") + 3)) >/dev/null || bench_die "$name did not go on after the drain"
		down+=("$(bd_json "$rep" "round(next(x for x in d['items'] if x['container'] == '$name')['downtime'] / 1e6, 1)")")
		gaps+=("$(bd_ferry "${BD_HOSTS[0]}" logs "$name" | bd_gap "$t0" "$t1")")
		lost+=("$(bd_ticks_lost "$name")")
		[ "$p" != 1 ] || BD_RATIOS+=("$(python3 -c "print(round(${down[-1]} / ${BD_ALONE_DOWN_OF[$name]}, 2))")")
	done
	BD_LOST[$p]=$(python3 -c "import sys; print(sum(int(x) for x in sys.argv[1:]))" "${lost[@]}")
	BD_TOOK[$p]=$(bd_json "$rep" 'round(d["took"] / 1e6)')
	BD_WALL[$p]=$((t1 - t0))
	BD_DOWN_MAX[$p]=$(bench_stat max "${down[@]}")
	BD_DOWN_MED[$p]=$(bench_stat median "${down[@]}")
	BD_GAP_MAX[$p]=$(bench_stat max "${gaps[@]}")
	BD_SPREAD[$p]=$(bd_json "$rep" '", ".join("%s %d" % (h, sum(1 for x in d["items"] if x.get("target") == h)) for h in sorted({x.get("target", "-") for x in d["items"]}))')
	bench_samples "drain_p${p}_downtime_ms" ms "${down[@]}"
	bench_samples "drain_p${p}_gap_ms" ms "${gaps[@]}"
	bench_log "drain: --max-parallel $p took ${BD_TOOK[$p]} ms (wall ${BD_WALL[$p]} ms); downtimes ${down[*]} ms; gaps ${gaps[*]} ms; to ${BD_SPREAD[$p]}"
	cp "$rep" "$BENCH_RESULTS/drain-report-p$p.json" 2>/dev/null || true
	bd_ferry "${BD_HOSTS[0]}" node undrain "${BD_HOSTS[0]}" >/dev/null || bench_die "undrain failed"
	for i in $(seq "$BD_N"); do bd_ferry "${BD_HOSTS[0]}" rm --force "p$p-$i" >/dev/null || bench_log "rm p$p-$i failed"; done
}

# bd_stopstart: six fresh workloads on bd-1 evacuated by stopping each and running it anew elsewhere.
bd_stopstart() {
	local i name dst t0 t1 tick start=0 away=() lost=()
	bench_log "drain: stop-and-start evacuation of $BD_N containers of 64 MiB"
	for i in $(seq "$BD_N"); do bd_run "s-$i" "${BD_HOSTS[0]}"; done
	for i in $(seq "$BD_N"); do
		bench_wait 30 "s-$i ticking" bd_ticked "s-$i" 20 >/dev/null || true
	done
	start=$(bench_now_ms)
	for i in $(seq "$BD_N"); do
		name=s-$i dst=${BD_HOSTS[$((1 + i % 2))]}
		t0=$(bench_now_ms)
		bd_ferry "${BD_HOSTS[0]}" stop "$name" >/dev/null || bench_die "ferry stop $name failed"
		tick=$(bd_last_tick "$name")
		bd_ferry "${BD_HOSTS[0]}" rm "$name" >/dev/null || bench_die "ferry rm $name failed"
		bd_run "$name" "$dst"
		t1=$(bench_now_ms)
		away+=($((t1 - t0)))
		bench_wait 20 "$name ticking again" bd_ticked "$name" 1 >/dev/null || true
		local now
		now=$(bd_last_tick "$name")
		[ "$now" -lt "$tick" ] || bench_log "drain: stop-and-start $name: its counter did not restart ($tick, then $now)?"
		lost+=("$tick")
		bench_log "drain: stop-and-start $name -> $dst: away $((t1 - t0)) ms, its counter was at $tick and starts again from 1 (now $now)"
	done
	BD_SS_TOTAL=$(($(bench_now_ms) - start))
	BD_SS_AWAY_MED=$(bench_stat median "${away[@]}")
	BD_SS_AWAY_MAX=$(bench_stat max "${away[@]}")
	BD_SS_LOST=$(python3 -c "import sys; print(sum(int(x) for x in sys.argv[1:]))" "${lost[@]}")
	bench_samples stopstart_away_ms ms "${away[@]}"
	bench_samples stopstart_ticks_lost ticks "${lost[@]}"
	for i in $(seq "$BD_N"); do bd_ferry "${BD_HOSTS[0]}" rm --force "s-$i" >/dev/null || true; done
}

bench_drain() {
	[ "$(id -u)" -eq 0 ] || bench_die "the drain benchmark makes network namespaces and runs agents: run it as root"
	bench_begin drain
	local memload
	declare -gA BD_CPU BD_CPU_MS BD_TOOK BD_WALL BD_DOWN_MAX BD_DOWN_MED BD_GAP_MAX BD_SPREAD BD_LOST BD_ALONE_DOWN_OF BD_ALONE_GAP_OF
	declare -ga BD_ALONE_DOWNS=() BD_ALONE_GAPS=() BD_RATIOS=()
	memload=$(bench_memload)
	BD_IMAGE_TAR=$BENCH_TMP/bd-busybox.tar
	FERRY_IMAGE_EXTRA=$memload:/bin/memload bash "$BENCH_ROOT/scripts/busybox-image.sh" "$BD_IMAGE_TAR"
	bd_up
	bd_drain 1
	bd_drain 3
	bd_stopstart

	local ratio worst
	ratio=$(python3 -c "print(round(${BD_TOOK[3]} / ${BD_TOOK[1]}, 2))")
	worst=$(bench_stat max "${BD_RATIOS[@]}")
	bench_figure drain_p1_ms "drain of $BD_N x 64 MiB, --max-parallel 1" "${BD_TOOK[1]}" ms
	bench_figure drain_p3_ms "drain of $BD_N x 64 MiB, --max-parallel 3" "${BD_TOOK[3]}" ms
	bench_figure drain_p3_vs_p1 "time with --max-parallel 3 / with 1" "$ratio" ratio "<=0.7"
	bench_figure drain_p1_cpu_busy_pct "--max-parallel 1: the machine's CPUs busy during the drain" "${BD_CPU[1]}" %
	bench_figure drain_p3_cpu_busy_pct "--max-parallel 3: the machine's CPUs busy during the drain" "${BD_CPU[3]}" %
	bench_figure drain_p1_cpu_ms "--max-parallel 1: CPU time the machine used during the drain (all processes)" "${BD_CPU_MS[1]}" ms
	bench_figure drain_p3_cpu_ms "--max-parallel 3: CPU time the machine used during the drain" "${BD_CPU_MS[3]}" ms
	bench_figure drain_p3_floor_ms "--max-parallel 3: the least time that CPU time takes on $(nproc) CPUs" "$((BD_CPU_MS[3] / $(nproc)))" ms
	bench_figure drain_p1_downtime_max_ms "--max-parallel 1: longest downtime of a container (reported)" "${BD_DOWN_MAX[1]}" ms
	bench_figure drain_p1_downtime_median_ms "--max-parallel 1: median downtime (reported)" "${BD_DOWN_MED[1]}" ms
	bench_figure drain_p1_vs_alone "--max-parallel 1: worst of each container's downtime / its own downtime migrated alone" "$worst" ratio "<=1.2"
	bench_note "drain --max-parallel 1, each container's downtime / its own migrated alone: ${BD_RATIOS[*]}"
	bench_figure drain_p1_vs_alone_median "--max-parallel 1: median of those ratios" "$(bench_stat median "${BD_RATIOS[@]}")" ratio
	bench_figure drain_p1_gap_max_ms "--max-parallel 1: longest gap in a workload's own output" "${BD_GAP_MAX[1]}" ms
	bench_figure drain_p3_downtime_max_ms "--max-parallel 3: longest downtime of a container (reported)" "${BD_DOWN_MAX[3]}" ms
	bench_figure drain_p3_downtime_median_ms "--max-parallel 3: median downtime (reported)" "${BD_DOWN_MED[3]}" ms
	bench_figure drain_p3_gap_max_ms "--max-parallel 3: longest gap in a workload's own output" "${BD_GAP_MAX[3]}" ms
	bench_figure drain_ticks_lost "ticks missing from the drained containers' counters (both drains, all 12)" "$((BD_LOST[1] + BD_LOST[3]))" ticks
	bench_baseline alone_downtime_ms "each container migrated alone (the other five beside it): downtime (reported, median of all ${#BD_ALONE_DOWNS[@]} moves)" "$BD_ALONE_DOWN" ms
	bench_baseline alone_gap_ms "each container migrated alone: gap in its output (median of all moves)" "$BD_ALONE_GAP" ms
	bench_baseline stopstart_total_ms "stop-and-start evacuation of $BD_N x 64 MiB: total" "$BD_SS_TOTAL" ms
	bench_baseline stopstart_away_median_ms "stop-and-start: each container away (stop .. new copy ready), median" "$BD_SS_AWAY_MED" ms
	bench_baseline stopstart_away_max_ms "stop-and-start: each container away, longest" "$BD_SS_AWAY_MAX" ms
	bench_baseline stopstart_ticks_lost "stop-and-start: ticks lost (counters restart at 1), all $BD_N" "$BD_SS_LOST" ticks
	bench_note "drain targets: --max-parallel 1 to ${BD_SPREAD[1]}; --max-parallel 3 to ${BD_SPREAD[3]} (wall clock of the commands: ${BD_WALL[1]} and ${BD_WALL[3]} ms)"
	bench_note "downtime (reported) = frozen on the source .. running on the target, per container from the drain's report; gap = biggest pause between a workload's t= stamps (it ticks every 100 ms and hashes its 64 MiB every 5 s, which can fall in the gap)"
	bench_note "stop-and-start: ferry stop + rm on ${BD_HOSTS[0]}, ferry run anew on ${BD_HOSTS[1]}/${BD_HOSTS[2]}, one container after the other; memload's memory is rebuilt from its seed, its counter starts again at 1: every tick counted before is lost"
	bench_note "all three hosts are network namespaces of one $(nproc)-core machine: the migrations of a drain share its cores and disk (and other work on the machine)"
	bench_finish
}
