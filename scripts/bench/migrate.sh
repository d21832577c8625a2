# migrate.sh: `scripts/bench.sh migrate` (sourced by bench.sh; uses lib.sh).
#
# On a fresh three-host dev cluster (scripts/dev-cluster.sh with its own prefix bm, subnet 10.75.0.0/24, bridge
# bmbr and directory), for the workloads `memload -mib S -interval 100ms -sum-every 50` with S in
# BENCH_MIGRATE_SIZES ("64 256 1024"), all in the same run:
#   1. Ferry: the workload in a container on bm-1 (`ferry run --node bm-1`), then `ferry migrate --mode stop-copy
#      -o json` BENCH_MIGRATE_RUNS (2) times (bm-1 -> bm-2, bm-2 -> bm-3, ...): downtime as reported (freeze on the
#      source to running on the target), total time, bytes raw and sent; and the workload's own view, the biggest
#      gap between consecutive t= stamps of `ferry logs` around the move. The agents' peak RSS (VmHWM, restarted
#      through clear_refs before) over the migrations of the biggest size.
#   2. The manual way of the CircleCI blog on a fresh copy of the workload in a plain runc bundle (its own runc
#      root and cgroup path; stdio on pipes, as a shim has them): `runc checkpoint --image-path`, `tar czf`,
#      `cp` to the other host's directory (same disk), `tar xzf`, `runc restore -d`. Downtime = checkpoint start to
#      restore done; and the workload's gap.
#   3. Podman (Debian's podman, in its own --root/--runroot and containers.conf, so nothing of the host's podman is
#      touched): `podman run --runtime runc --network none --ulimit host`, `podman container checkpoint --export
#      F.tar.zst --compress zstd`, `cp`, `podman container restore --import F.tar.zst --name NEW`. Downtime =
#      checkpoint start to restore done; and the workload's gap (`podman logs` of both containers).
# Each move starts just after the workload printed a sum line (it hashes its memory every 50 ticks, i.e. every
# 5 s), so that hashing does not fall into the measured gap. Post-copy is asked for once and its answer recorded.
# Targets (issue 5): stop-copy downtime at 256 MiB <= 1/6 of the manual way's and <= 1/2 of Podman's; the agents
# under 100 MiB of peak RSS during the biggest migration.

BM_PREFIX=bm
BM_DIR=/tmp/ferry-bench-migrate
BM_HOSTS=(bm-1 bm-2 bm-3)
BM_CG=ferry-bench-manual

bm_script() {
	FERRY_DEV_HOSTS=3 FERRY_DEV_PREFIX=$BM_PREFIX FERRY_DEV_NET=10.75.0 FERRY_DEV_BRIDGE=bmbr \
		FERRY_DEV_DIR=$BM_DIR FERRY_DEV_PORT=7400 FERRY_DEV_AGENT_FLAGS= FERRY_BIN=$BENCH_BIN \
		bash "$BENCH_ROOT/scripts/dev-cluster.sh" "$1"
}

bm_ferry() {
	local host=$1
	shift
	"$BENCH_BIN" --addr "unix://$BM_DIR/$host/ferry.sock" "$@"
}

bm_down() {
	if [ "${BENCH_STATUS:-0}" -ne 0 ] && [ -d "$BM_DIR" ]; then
		mkdir -p "$BENCH_RESULTS/migrate-failed-logs"
		cp "$BM_DIR"/*.log "$BENCH_TMP/migrate-dev.log" "$BENCH_TMP/bm-migrate.log" "$BENCH_RESULTS/migrate-failed-logs/" 2>/dev/null || true
		bench_log "agent logs of the failed run kept in $BENCH_RESULTS/migrate-failed-logs/"
	fi
	bm_script down >>"$BENCH_TMP/migrate-dev.log" 2>&1 || bench_log "dev-cluster.sh down failed; see above"
	local left
	left=$(ip netns list 2>/dev/null | grep -E "^$BM_PREFIX-[0-9]+" || true)
	[ -z "$left" ] || bench_log "namespaces left after down: $left"
}

bm_alive_all() {
	bm_ferry "${BM_HOSTS[0]}" node ls -o json | python3 -c '
import json, sys
nodes = {x["name"]: x.get("status") for x in (json.load(sys.stdin) or [])}
sys.exit(0 if all(nodes.get(h) == "alive" for h in sys.argv[1:]) else 1)' "${BM_HOSTS[@]}"
}

bm_up() {
	bench_log "migrate: starting hosts ${BM_HOSTS[*]} in $BM_DIR"
	bm_down
	bench_on_exit bm_down
	bm_script up >>"$BENCH_TMP/migrate-dev.log" 2>&1 || { cat "$BENCH_TMP/migrate-dev.log" >&2; bench_die "dev-cluster.sh up failed"; }
	bench_wait 60 "all migrate hosts alive" bm_alive_all || bench_die "the migrate hosts are not all alive"
	local h
	for h in "${BM_HOSTS[@]}"; do
		bm_ferry "$h" image import busybox "$BM_IMAGE_TAR" >/dev/null 2>&1 || bench_die "image import on $h failed"
	done
}

# bm_gap START_MS END_MS: reads log lines on stdin; prints the biggest gap (ms, one decimal) between consecutive
# t= stamps where the pair overlaps [START, END], and the number of stamps after END.
bm_gap() {
	python3 -c '
import re, sys
start, end = int(sys.argv[1]) * 1000, int(sys.argv[2]) * 1000
ts = sorted(set(int(m.group(1)) for m in re.finditer(r"\bt=(\d+)", sys.stdin.read())))
gaps = [b - a for a, b in zip(ts, ts[1:]) if b >= start and a <= end]
after = sum(1 for t in ts if t > end)
print(round(max(gaps) / 1000, 1) if gaps else "none", after)' "$1" "$2"
}

# bm_sums CMD...: the number of sum lines CMD prints (a log).
bm_sums() { "$@" 2>/dev/null | grep -c 'sum=' || true; }

# bm_after_sum CMD...: waits (at most 12 s) for a new sum line in CMD's log, then 0.3 s more.
bm_after_sum() {
	local n0 deadline
	n0=$(bm_sums "$@")
	deadline=$(($(bench_now_ms) + 12000))
	while [ "$(bm_sums "$@")" -le "$n0" ]; do
		[ "$(bench_now_ms)" -lt "$deadline" ] || { bench_log "no new sum line in 12 s"; return 0; }
		sleep 0.1
	done
	sleep 0.3
}

# bm_count_after END_MS CMD...: succeeds when CMD's log has 3 stamps after END_MS.
bm_count_after() {
	local end=$1
	shift
	"$@" 2>/dev/null | python3 -c '
import re, sys
n = sum(1 for m in re.finditer(r"\bt=(\d+)", sys.stdin.read()) if int(m.group(1)) > int(sys.argv[1]) * 1000)
sys.exit(0 if n >= 3 else 1)' "$end"
}

# bm_wait_after END_MS CMD...: waits until CMD's log has 3 stamps after END_MS.
bm_wait_after() { bench_wait 30 "the workload going on after the move" bm_count_after "$@" >/dev/null; }

# bm_ready CMD...: CMD's log has the workload's ready line.
bm_ready() { "$@" 2>/dev/null | grep -q '^ready'; }

# bm_plogs ID...: the podman logs of the containers, one after the other.
bm_plogs() {
	local id
	for id in "$@"; do bm_podman logs "$id"; done
}

bm_json() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# bm_ferry_size S: Ferry's stop-copy moves of the S MiB workload; records its figures.
bm_ferry_size() {
	local s=$1 name=w$s runs=${BENCH_MIGRATE_RUNS:-2} r src dst t0 t1 rep gap after
	local down=() total=() sent=() raw=() gaps=() agents=()
	bench_log "migrate: Ferry, $s MiB: ferry run on ${BM_HOSTS[0]}"
	bm_ferry "${BM_HOSTS[0]}" run --name "$name" --node "${BM_HOSTS[0]}" busybox -- \
		/bin/memload -mib "$s" -interval 100ms -sum-every 50 >/dev/null || bench_die "ferry run $name failed"
	bench_wait 120 "$name ready" bm_ready bm_ferry "${BM_HOSTS[0]}" logs "$name" ||
		bench_die "$name never printed ready"
	if [ "$s" = "$BM_BIGGEST" ]; then
		local h pid
		for h in "${BM_HOSTS[@]}"; do
			pid=$(cat "$BM_DIR/$h.pid")
			agents+=("$pid")
			BM_HWM_BEFORE+="$h $(bench_mib "$(bench_hwm_kib "$pid")") MiB; "
			bench_hwm_reset "$pid"
		done
	fi
	for r in $(seq "$runs"); do
		src=${BM_HOSTS[$(((r - 1) % 3))]} dst=${BM_HOSTS[$((r % 3))]}
		rep=$BENCH_TMP/bm-report-$s-$r.json
		bm_after_sum bm_ferry "${BM_HOSTS[0]}" logs "$name"
		t0=$(bench_now_ms)
		bm_ferry "${BM_HOSTS[0]}" migrate "$name" "$src" "$dst" --mode stop-copy -o json >"$rep" 2>>"$BENCH_TMP/bm-migrate.log" ||
			{ cat "$rep" >&2; bench_die "ferry migrate $name $src $dst failed (see $BENCH_TMP/bm-migrate.log)"; }
		t1=$(bench_now_ms)
		bm_wait_after "$t1" bm_ferry "${BM_HOSTS[0]}" logs "$name" || bench_die "$name did not go on after the move"
		read -r gap after < <(bm_ferry "${BM_HOSTS[0]}" logs "$name" | bm_gap "$t0" "$t1")
		down+=("$(bm_json "$rep" 'round(d["downtime"] / 1e6, 1)')")
		total+=("$(bm_json "$rep" 'round(d["total"] / 1e6, 1)')")
		sent+=("$(bm_json "$rep" 'd["bytes_sent"]')") raw+=("$(bm_json "$rep" 'd["bytes_raw"]')")
		gaps+=("$gap")
		bench_log "migrate: Ferry $s MiB $src -> $dst: downtime ${down[-1]} ms, workload gap $gap ms, total ${total[-1]} ms, sent ${sent[-1]} of ${raw[-1]} bytes; CRIU $(bm_json "$rep" '"frozen %.0f ms, memdump %.0f ms, restore %.0f ms" % (d["dump"]["criu"]["frozen_time"] / 1e6, d["dump"]["criu"]["memdump_time"] / 1e6, d["restore"]["criu"]["restore_time"] / 1e6) if d.get("dump", {}).get("criu") and d.get("restore", {}).get("criu") else "stats missing"'); downtime by phase $(bm_json "$rep" '", ".join("%s %.0f ms" % (k, v / 1e6) for k, v in (d.get("phases") or {}).items()) or "not reported"')"
		cp "$rep" "$BENCH_RESULTS/migrate-report-$s-$r.json" 2>/dev/null || true
	done
	if [ ${#agents[@]} -gt 0 ]; then
		local i kib max=0
		BM_HWM_NOTE=
		for i in "${!agents[@]}"; do
			kib=$(bench_hwm_kib "${agents[$i]}")
			[ "$kib" -gt "$max" ] && max=$kib
			BM_HWM_NOTE+="${BM_HOSTS[$i]} $(bench_mib "$kib") MiB; "
		done
		BM_HWM_MAX=$max
	fi
	if [ "$s" = "$BM_SMALLEST" ]; then
		local err
		err=$(bm_ferry "${BM_HOSTS[0]}" migrate "$name" "${BM_HOSTS[0]}" --mode post-copy -o json 2>&1 >/dev/null) &&
			bench_note "post-copy: ferry migrate --mode post-copy was accepted (unexpected): see the logs" ||
			BM_POSTCOPY=$(head -n1 <<<"$err")
	fi
	bm_ferry "${BM_HOSTS[0]}" rm --force "$name" >/dev/null || bench_log "ferry rm --force $name failed"
	BM_F_DOWN[$s]=$(bench_stat median "${down[@]}" | xargs printf '%.0f')
	BM_F_GAP[$s]=$(bench_stat median "${gaps[@]}" | xargs printf '%.0f')
	BM_F_TOTAL[$s]=$(bench_stat median "${total[@]}" | xargs printf '%.0f')
	BM_F_SENT[$s]=$(bench_stat median "${sent[@]}" | cut -d. -f1)
	BM_F_RAW[$s]=$(bench_stat median "${raw[@]}" | cut -d. -f1)
	bench_samples "ferry_downtime_ms_$s" ms "${down[@]}"
	bench_samples "ferry_gap_ms_$s" ms "${gaps[@]}"
	bench_samples "ferry_total_ms_$s" ms "${total[@]}"
}

# bm_manual_size S: the blog's manual way on a fresh S MiB workload in a plain runc bundle.
bm_manual_size() {
	local s=$1 id=m$s base=$BENCH_TMP/bm-manual t0 t1 t2 t3 t4 t5 gap after
	local b=$base/bundle-$s h1=$base/h1 h2=$base/h2 log1=$base/$id-1.log log2=$base/$id-2.log
	bench_log "migrate: manual way, $s MiB"
	rm -rf "$b" "$h1" "$h2" && mkdir -p "$b" "$h1" "$h2"
	: >"$log1" && : >"$log2"
	runc spec --bundle "$b"
	python3 - "$b/config.json" "$BM_ROOTFS" "$s" "/$BM_CG/$id" <<'PY'
import json, sys
p, root, s, cg = sys.argv[1:]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/memload", "-mib", s, "-interval", "100ms", "-sum-every", "50"]
c["root"] = {"path": root, "readonly": False}
c["linux"]["cgroupsPath"] = cg
json.dump(c, open(p, "w"), indent=1)
PY
	# stdout and stderr on a pipe (a cat appending to the log), as a shim would hold them.
	runc --root "$base/runc" run -d --bundle "$b" "$id" </dev/null > >(cat >>"$log1") 2>&1 || bench_die "runc run $id failed"
	bench_wait 120 "$id ready" grep -q '^ready' "$log1" || bench_die "$id never printed ready"
	bm_after_sum cat "$log1"
	t0=$(bench_now_ms)
	runc --root "$base/runc" checkpoint --image-path "$h1/img" "$id" >>"$BENCH_TMP/bm-manual.log" 2>&1 || bench_die "runc checkpoint $id failed"
	t1=$(bench_now_ms)
	tar czf "$h1/img.tgz" -C "$h1/img" . || bench_die "tar czf failed"
	t2=$(bench_now_ms)
	cp "$h1/img.tgz" "$h2/img.tgz"
	t3=$(bench_now_ms)
	mkdir -p "$h2/img" && tar xzf "$h2/img.tgz" -C "$h2/img" || bench_die "tar xzf failed"
	t4=$(bench_now_ms)
	runc --root "$base/runc" restore -d --bundle "$b" --image-path "$h2/img" "$id" </dev/null > >(cat >>"$log2") 2>>"$BENCH_TMP/bm-manual.log" ||
		bench_die "runc restore $id failed (see $BENCH_TMP/bm-manual.log)"
	t5=$(bench_now_ms)
	bm_wait_after "$t5" cat "$log1" "$log2" || bench_die "$id did not go on after the restore"
	read -r gap after < <(cat "$log1" "$log2" | bm_gap "$t0" "$t5")
	BM_M_DOWN[$s]=$((t5 - t0))
	BM_M_GAP[$s]=$gap
	BM_M_BYTES[$s]=$(stat -c %s "$h1/img.tgz")
	BM_M_RAW[$s]=$(du -sb "$h1/img" | cut -f1)
	BM_M_PARTS[$s]="checkpoint $((t1 - t0)), tar czf $((t2 - t1)), cp $((t3 - t2)), tar xzf $((t4 - t3)), restore $((t5 - t4)) ms"
	bench_log "migrate: manual $s MiB: downtime $((t5 - t0)) ms (${BM_M_PARTS[$s]}), workload gap $gap ms, archive ${BM_M_BYTES[$s]} bytes"
	runc --root "$base/runc" kill "$id" KILL >/dev/null 2>&1 || true
	bench_wait 10 "$id stopped" bash -c "runc --root '$base/runc' state '$id' | grep -q '\"stopped\"'" || true
	runc --root "$base/runc" delete --force "$id" >/dev/null 2>&1 || true
	rm -rf "$h1" "$h2"
}

bm_manual_cleanup() {
	local base=$BENCH_TMP/bm-manual id cg
	if [ -d "$base/runc" ]; then
		for id in $(runc --root "$base/runc" list -q 2>/dev/null); do
			runc --root "$base/runc" kill "$id" KILL >/dev/null 2>&1 || true
			sleep 0.2
			runc --root "$base/runc" delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
	for cg in /sys/fs/cgroup/*/"$BM_CG"; do
		[ -d "$cg" ] || continue
		find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
		rmdir "$cg" 2>/dev/null || true
	done
}

bm_podman() { CONTAINERS_CONF=$BM_PODMAN_DIR/containers.conf podman --root "$BM_PODMAN_DIR/root" --runroot "$BM_PODMAN_DIR/run" \
	--storage-driver overlay --cgroup-manager cgroupfs --events-backend file "$@"; }

bm_podman_setup() {
	BM_PODMAN_DIR=$BENCH_TMP/bm-podman
	mkdir -p "$BM_PODMAN_DIR"
	# podman keeps its blob-info cache in /var/lib/containers/cache whatever --root says: remove it at the end
	# if this benchmark is what made it.
	BM_PODMAN_MADE=
	[ -e /var/lib/containers ] || BM_PODMAN_MADE=1
	# This machine refuses to raise RLIMIT_NOFILE and RLIMIT_NPROC; podman's default ulimits try to.
	printf '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' >"$BM_PODMAN_DIR/containers.conf"
	bench_on_exit bm_podman_cleanup
	bm_podman import "$BM_IMAGE_TAR" localhost/ferry-bench-busybox:latest >/dev/null 2>>"$BENCH_TMP/bm-podman.log" ||
		{ cat "$BENCH_TMP/bm-podman.log" >&2; bench_die "podman import failed"; }
}

bm_podman_cleanup() {
	[ -n "${BM_PODMAN_DIR:-}" ] && [ -d "$BM_PODMAN_DIR" ] || return 0
	bm_podman rm --all --force --time 0 >/dev/null 2>&1 || true
	bm_podman rmi --all --force >/dev/null 2>&1 || true
	awk -v d="$BM_PODMAN_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" || true; done
	rm -rf "$BM_PODMAN_DIR"
	[ -z "${BM_PODMAN_MADE:-}" ] || rm -rf /var/lib/containers
}

# bm_podman_size S: Podman's export, copy, import of a fresh S MiB workload.
bm_podman_size() {
	local s=$1 id=p$s h1=$BM_PODMAN_DIR/h1 h2=$BM_PODMAN_DIR/h2 t0 t1 t2 t3 gap after
	bench_log "migrate: podman, $s MiB"
	rm -rf "$h1" "$h2" && mkdir -p "$h1" "$h2"
	bm_podman run -d --name "$id" --runtime runc --network none --ulimit host localhost/ferry-bench-busybox:latest \
		/bin/memload -mib "$s" -interval 100ms -sum-every 50 >/dev/null 2>>"$BENCH_TMP/bm-podman.log" ||
		{ tail -n5 "$BENCH_TMP/bm-podman.log" >&2; bench_die "podman run $id failed"; }
	bench_wait 120 "$id ready" bm_ready bm_plogs "$id" ||
		bench_die "$id never printed ready"
	bm_after_sum bm_plogs "$id"
	t0=$(bench_now_ms)
	bm_podman container checkpoint --export "$h1/$id.tar.zst" --compress zstd "$id" >>"$BENCH_TMP/bm-podman.log" 2>&1 ||
		{ tail -n5 "$BENCH_TMP/bm-podman.log" >&2; bench_die "podman checkpoint $id failed"; }
	t1=$(bench_now_ms)
	cp "$h1/$id.tar.zst" "$h2/$id.tar.zst"
	t2=$(bench_now_ms)
	bm_podman container restore --import "$h2/$id.tar.zst" --name "$id-b" >>"$BENCH_TMP/bm-podman.log" 2>&1 ||
		{ tail -n5 "$BENCH_TMP/bm-podman.log" >&2; bench_die "podman restore $id failed"; }
	t3=$(bench_now_ms)
	bm_wait_after "$t3" bm_plogs "$id" "$id-b" ||
		bench_die "$id did not go on after the restore"
	read -r gap after < <(bm_plogs "$id" "$id-b" 2>/dev/null | bm_gap "$t0" "$t3")
	BM_P_DOWN[$s]=$((t3 - t0))
	BM_P_GAP[$s]=$gap
	BM_P_BYTES[$s]=$(stat -c %s "$h1/$id.tar.zst")
	BM_P_PARTS[$s]="checkpoint --export $((t1 - t0)), cp $((t2 - t1)), restore --import $((t3 - t2)) ms"
	bench_log "migrate: podman $s MiB: downtime $((t3 - t0)) ms (${BM_P_PARTS[$s]}), workload gap $gap ms, archive ${BM_P_BYTES[$s]} bytes"
	bm_podman rm --force --time 0 "$id" "$id-b" >/dev/null 2>&1 || bench_log "podman rm $id failed"
	rm -rf "$h1" "$h2"
}

bench_migrate() {
	[ "$(id -u)" -eq 0 ] || bench_die "the migrate benchmark makes network namespaces and runs agents: run it as root"
	command -v podman >/dev/null || bench_die "migrate needs podman (apt-get install podman)"
	bench_begin migrate
	local sizes=(${BENCH_MIGRATE_SIZES:-64 256 1024}) s memload
	BM_SMALLEST=${sizes[0]} BM_BIGGEST=${sizes[-1]} BM_HWM_MAX= BM_HWM_NOTE= BM_HWM_BEFORE= BM_POSTCOPY=
	declare -gA BM_F_DOWN BM_F_GAP BM_F_TOTAL BM_F_SENT BM_F_RAW BM_M_DOWN BM_M_GAP BM_M_BYTES BM_M_RAW BM_M_PARTS \
		BM_P_DOWN BM_P_GAP BM_P_BYTES BM_P_PARTS
	memload=$(bench_memload)
	BM_IMAGE_TAR=$BENCH_TMP/bm-busybox.tar BM_ROOTFS=$BENCH_TMP/bm-rootfs
	FERRY_IMAGE_EXTRA=$memload:/bin/memload bash "$BENCH_ROOT/scripts/busybox-image.sh" "$BM_IMAGE_TAR"
	FERRY_IMAGE_EXTRA=$memload:/bin/memload bash "$BENCH_ROOT/scripts/busybox-image.sh" "$BM_ROOTFS"
	bm_up
	for s in "${sizes[@]}"; do bm_ferry_size "$s"; done
	bench_on_exit bm_manual_cleanup
	for s in "${sizes[@]}"; do bm_manual_size "$s"; done
	bm_manual_cleanup
	bm_podman_setup
	for s in "${sizes[@]}"; do bm_podman_size "$s"; done

	for s in "${sizes[@]}"; do
		local t1= t2=
		if [ "$s" = 256 ]; then
			t1="<=$(python3 -c "print(round(${BM_M_DOWN[$s]} / 6, 1))")"
			t2="<=$(python3 -c "print(round(${BM_P_DOWN[$s]} / 2, 1))")"
		fi
		bench_figure "ferry_downtime_ms_$s" "$s MiB: Ferry stop-copy downtime (reported, median)" "${BM_F_DOWN[$s]}" ms "$t1"
		[ -z "$t2" ] || bench_figure "ferry_downtime_vs_podman_ms_$s" "$s MiB: Ferry stop-copy downtime vs 1/2 of Podman's" "${BM_F_DOWN[$s]}" ms "$t2"
		bench_figure "ferry_gap_ms_$s" "$s MiB: Ferry, workload's biggest output gap (median)" "${BM_F_GAP[$s]}" ms
		bench_figure "ferry_total_ms_$s" "$s MiB: Ferry total time (median)" "${BM_F_TOTAL[$s]}" ms
		bench_figure "ferry_bytes_sent_$s" "$s MiB: Ferry bytes sent (of ${BM_F_RAW[$s]} raw)" "${BM_F_SENT[$s]}" bytes
	done
	[ -z "$BM_HWM_MAX" ] || bench_figure agents_hwm_mib "agents' peak RSS (VmHWM, max of 3) during the $BM_BIGGEST MiB migrations" "$(bench_mib "$BM_HWM_MAX")" MiB "<100"
	bench_figure postcopy "post-copy" "not available on this kernel (probe)" ""
	for s in "${sizes[@]}"; do
		bench_baseline "manual_downtime_ms_$s" "$s MiB: manual way downtime (checkpoint .. restore)" "${BM_M_DOWN[$s]}" ms
		bench_baseline "manual_gap_ms_$s" "$s MiB: manual way, workload's biggest output gap" "${BM_M_GAP[$s]}" ms
		bench_baseline "manual_bytes_$s" "$s MiB: manual way archive (tar.gz of ${BM_M_RAW[$s]} bytes)" "${BM_M_BYTES[$s]}" bytes
	done
	for s in "${sizes[@]}"; do
		bench_baseline "podman_downtime_ms_$s" "$s MiB: Podman downtime (checkpoint --export .. restore --import)" "${BM_P_DOWN[$s]}" ms
		bench_baseline "podman_gap_ms_$s" "$s MiB: Podman, workload's biggest output gap" "${BM_P_GAP[$s]}" ms
		bench_baseline "podman_bytes_$s" "$s MiB: Podman archive (tar.zst)" "${BM_P_BYTES[$s]}" bytes
	done
	for s in "${sizes[@]}"; do
		bench_note "$s MiB downtime: Ferry ${BM_F_DOWN[$s]} ms (gap ${BM_F_GAP[$s]}) | manual ${BM_M_DOWN[$s]} ms (gap ${BM_M_GAP[$s]}; ${BM_M_PARTS[$s]}) | Podman ${BM_P_DOWN[$s]} ms (gap ${BM_P_GAP[$s]}; ${BM_P_PARTS[$s]})"
	done
	bench_note "Ferry: ${BENCH_MIGRATE_RUNS:-2} stop-copy moves per size (bm-1 -> bm-2 -> bm-3), medians; reports in $BENCH_RESULTS/migrate-report-SIZE-RUN.json; the manual way and Podman once per size"
	bench_note "workload gap: biggest gap between consecutive t= stamps (memload ticks every 100 ms, so it includes up to one interval) overlapping the move; each move starts 0.3 s after a sum line"
	[ -z "$BM_HWM_NOTE" ] || bench_note "agents' VmHWM (restarted before the $BM_BIGGEST MiB migrations): $BM_HWM_NOTE(since start, before: $BM_HWM_BEFORE)"
	bench_note "post-copy: not available on this kernel (probe); ferry answers: ${BM_POSTCOPY:-nothing}"
	bench_note "manual way: plain runc bundle (same rootfs content, stdio on pipes, own runc root), images copied with cp between two directories of this disk; Podman $(podman --version | awk '{print $3}') with runc, --network none, --ulimit host, own --root"
	bench_finish
}
