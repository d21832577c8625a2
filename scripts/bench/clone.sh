# clone.sh: `scripts/bench.sh clone` (sourced by bench.sh; uses lib.sh).
#
# A real slow-booting third-party service: redis-server from Debian's package, in an image made by
# scripts/redis-image.sh from the host's binary and libraries, loading BENCH_CLONE_KEYS (4000000) keys from its
# RDB file at start. On a fresh three-host dev cluster (prefix bc, subnet 10.76.0.0/24, bridge bcbr, own
# directory), the time from the command to the first PING answered with PONG (redis answers LOADING until its
# dataset is in), all in one run:
#   1. cold start: `ferry run --node bc-1`;
#   2. (not timed) `ferry template create warm --copies 0`: the warm checkpoint, kept on bc-1 only;
#   3. `ferry clone warm --node bc-1`: one clone on the node that holds the checkpoint (BENCH_CLONE_RUNS, 5,
#      runs; the median);
#   4. `ferry clone warm --node bc-1 --count 5`: until all five answer (BENCH_CLONE_FIVE_RUNS, 3; the median);
#   5. `ferry clone warm --node bc-2`, then the same on bc-3: nodes that do not hold the checkpoint yet (it is
#      sent with the clone; the clone's report gives the transfer time); the figure is the run with the longer
#      time beyond its transfer;
#   6. Podman's way, with Debian's podman in its own --root: the same rootfs imported, run and warm (its cold start
#      is recorded too), `podman container checkpoint --export F --compress zstd`, then
#      `podman container restore --import F --name NEW` until NEW answers.
# Ferry's containers run with --net none (PING from a probe that enters their network namespace, BC_PROBE);
# Podman's with --network host on its own port (it cannot restore a container whose loopback it does not bring up).
# Beside the times, the CPU time the whole machine used in steps 3 and 4 (/proc/stat): five clones cannot all
# answer sooner than that CPU time divided by the machine's CPUs.
# Targets (issue 6): a clone on the same node answers >= 20x sooner than a cold start and >= 5x sooner than Podman's
# restore; 5 clones all answer within 2x a single clone's time; the first clone on a new node within the
# transfer time of its checkpoint plus one local clone's time.

BC_PREFIX=bc
BC_DIR=/tmp/ferry-bench-clone
BC_HOSTS=(bc-1 bc-2 bc-3)
BC_PODMAN_PORT=16379
BC_REDIS_ARGS=(/usr/bin/redis-server --port 6379 --bind 127.0.0.1 --dir /data --dbfilename dump.rdb --save "" --appendonly no --protected-mode no)

bc_script() {
	FERRY_DEV_HOSTS=3 FERRY_DEV_PREFIX=$BC_PREFIX FERRY_DEV_NET=10.76.0 FERRY_DEV_BRIDGE=bcbr \
		FERRY_DEV_DIR=$BC_DIR FERRY_DEV_PORT=7400 FERRY_DEV_AGENT_FLAGS= FERRY_BIN=$BENCH_BIN \
		bash "$BENCH_ROOT/scripts/dev-cluster.sh" "$1"
}

bc_ferry() { "$BENCH_BIN" --addr "unix://$BC_DIR/bc-1/ferry.sock" "$@"; }

bc_down() {
	if [ "${BENCH_STATUS:-0}" -ne 0 ] && [ -d "$BC_DIR" ]; then
		mkdir -p "$BENCH_RESULTS/clone-failed-logs"
		cp "$BC_DIR"/*.log "$BENCH_TMP/clone-dev.log" "$BENCH_TMP/bc-podman.log" "$BENCH_RESULTS/clone-failed-logs/" 2>/dev/null || true
		bench_log "agent logs of the failed run kept in $BENCH_RESULTS/clone-failed-logs/"
	fi
	bc_script down >>"$BENCH_TMP/clone-dev.log" 2>&1 || bench_log "dev-cluster.sh down failed"
	rm -rf "$BC_DIR"
}

bc_alive_all() {
	bc_ferry node ls -o json | python3 -c '
import json, sys
nodes = {x["name"]: x.get("status") for x in (json.load(sys.stdin) or [])}
sys.exit(0 if all(nodes.get(h) == "alive" for h in sys.argv[1:]) else 1)' "${BC_HOSTS[@]}"
}

# bc_pid NAME: the host pid of container NAME's init.
bc_pid() {
	bc_ferry ps -o json | python3 -c '
import json, sys
print([c["pid"] for c in json.load(sys.stdin) if c["config"]["name"] == sys.argv[1]][0])' "$1"
}

# BC_PROBE: bash that waits until the redis on 127.0.0.1:$1 answers PING with PONG and prints when (epoch ms),
# or fails after $2 seconds. One probe per redis, connecting every 5 ms with bash's own /dev/tcp and waiting
# on the connection for the answer: no program is started per try (a redis-cli per try and clone, every 10 ms,
# took CPU from the clones being measured), and the answer is seen the moment it comes.
BC_PROBE='deadline=$(( ${EPOCHREALTIME/./} / 1000 + $2 * 1000 ))
exec 4<> <(:)
while :; do
	if { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 && IFS= read -r -t 2 r <&3; } 2>/dev/null && [[ $r == +PONG* ]]; then
		t=$EPOCHREALTIME
		echo $(( ${t/./} / 1000 ))
		exit 0
	fi
	exec 3>&- 2>/dev/null
	(( ${EPOCHREALTIME/./} / 1000 < deadline )) || exit 1
	read -r -t 0.005 -u 4
done'

# bc_wait_pong SECONDS PID...: waits until every PID's redis (in PID's network namespace, port 6379) answers,
# all probed at once; prints when the last one answered (epoch ms); fails after SECONDS.
bc_wait_pong() {
	local secs=$1 pid t last=0 out=$BENCH_TMP/bc-pong
	shift
	for pid in "$@"; do
		nsenter --net="/proc/$pid/ns/net" bash -c "$BC_PROBE" probe 6379 "$secs" >"$out.$pid" &
	done
	wait || true
	for pid in "$@"; do
		t=$(cat "$out.$pid" 2>/dev/null)
		rm -f "$out.$pid"
		[ -n "$t" ] || { bench_log "redis in $pid did not answer PING within ${secs}s"; return 1; }
		[ "$t" -le "$last" ] || last=$t
	done
	echo "$last"
}

# bc_clone ARGS...: runs ferry clone ARGS -o json, waits until every clone answers PING; prints the milliseconds
# from the command to the last PONG, the transfer time the report gives (ms, 0 when nothing was sent), and
# the CPU time the whole machine used from the command to the last PONG (ms, all processes: the command,
# the agents, runc, CRIU, the clones, the probes; in steps of the kernel's tick).
bc_clone() {
	local t0 out pids rest t1 c0 c1
	c0=$(bench_cpu_ticks)
	t0=$(bench_now_ms)
	out=$(bc_ferry clone -o json "$@" 2>>"$BENCH_TMP/bc-clone.log") || { bench_log "ferry clone $* failed"; return 1; }
	# The clones' pids, read in the shell: starting a JSON parser here would be counted in the clone's time
	# (each clone report has one "pid"; nothing else in the result does).
	pids=() rest=$out
	while [[ $rest =~ \"pid\":\ *([0-9]+)(.*) ]]; do
		pids+=("${BASH_REMATCH[1]}")
		rest=${BASH_REMATCH[2]}
	done
	[ ${#pids[@]} -gt 0 ] || { bench_log "ferry clone $* reported no clone"; return 1; }
	t1=$(bc_wait_pong 120 "${pids[@]}") || return 1
	c1=$(bench_cpu_ticks)
	printf '%s\n' "$out" >"$BENCH_RESULTS/clone-report-$BC_STEP.json" 2>/dev/null || true
	# The clones' names first: the caller removes them as soon as it has read the times below.
	python3 -c 'import json, sys; print(" ".join(c["container"] for c in json.load(sys.stdin)["clones"]))' <<<"$out" >"$BENCH_TMP/bc-last"
	echo "$((t1 - t0)) $(python3 -c 'import json, sys; print(json.load(sys.stdin).get("copy_took", 0) // 1000000)' <<<"$out") $(bc_cpu_ms "$c0" "$c1")"
}

# bc_cpu_ms "BUSY0 TOTAL0" "BUSY1 TOTAL1": the CPU time between two bench_cpu_ticks readings, in ms.
bc_cpu_ms() {
	local b0 b1
	read -r b0 _ <<<"$1"
	read -r b1 _ <<<"$2"
	echo $(((b1 - b0) * 1000 / $(getconf CLK_TCK)))
}

# bc_rm_last: removes the clones of the last bc_clone.
bc_rm_last() {
	local n
	for n in $(cat "$BENCH_TMP/bc-last"); do bc_ferry rm --force "$n" >/dev/null || bench_log "rm $n failed"; done
}

bc_podman() { CONTAINERS_CONF=$BC_PODMAN_DIR/containers.conf podman --root "$BC_PODMAN_DIR/root" --runroot "$BC_PODMAN_DIR/run" \
	--storage-driver overlay --cgroup-manager cgroupfs --events-backend file "$@"; }

bc_podman_cleanup() {
	[ -n "${BC_PODMAN_DIR:-}" ] && [ -d "$BC_PODMAN_DIR" ] || return 0
	bc_podman rm --all --force --time 0 >/dev/null 2>&1 || true
	bc_podman rmi --all --force >/dev/null 2>&1 || true
	awk -v d="$BC_PODMAN_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" || true; done
	rm -rf "$BC_PODMAN_DIR"
	[ -z "${BC_PODMAN_MADE:-}" ] || rm -rf /var/lib/containers
}

bc_podman_pong() { [ "$(redis-cli -h 127.0.0.1 -p "$BC_PODMAN_PORT" ping 2>/dev/null)" = PONG ]; }

# bc_podman_wait: waits until Podman's redis (host network) answers; prints when (epoch ms).
bc_podman_wait() {
	bash -c "$BC_PROBE" probe "$BC_PODMAN_PORT" 120 || { bench_log "podman's redis did not answer within 120s"; return 1; }
}

# bc_podman_run: Podman's cold start and its clone from a warm checkpoint; sets BC_P_COLD, BC_P_RESTORE, BC_P_BYTES.
bc_podman_run() {
	BC_PODMAN_DIR=$BENCH_TMP/bc-podman
	mkdir -p "$BC_PODMAN_DIR"
	BC_PODMAN_MADE=
	[ -e /var/lib/containers ] || BC_PODMAN_MADE=1
	printf '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' >"$BC_PODMAN_DIR/containers.conf"
	bench_on_exit bc_podman_cleanup
	bc_podman import "$BC_IMAGE_TAR" localhost/ferry-bench-redis:latest >/dev/null 2>>"$BENCH_TMP/bc-podman.log" ||
		{ cat "$BENCH_TMP/bc-podman.log" >&2; bench_die "podman import failed"; }
	! bc_podman_pong || bench_die "something already answers on 127.0.0.1:$BC_PODMAN_PORT"
	local t0 t1 args=("${BC_REDIS_ARGS[@]}")
	args[2]=$BC_PODMAN_PORT
	t0=$(bench_now_ms)
	bc_podman run -d --name pr --runtime runc --network host --ulimit host localhost/ferry-bench-redis:latest "${args[@]}" \
		>/dev/null 2>>"$BENCH_TMP/bc-podman.log" || { tail -n5 "$BENCH_TMP/bc-podman.log" >&2; bench_die "podman run failed"; }
	t1=$(bc_podman_wait) || bench_die "podman's redis never answered"
	BC_P_COLD=$((t1 - t0))
	bench_log "clone: podman cold start $BC_P_COLD ms; checkpoint --export"
	bc_podman container checkpoint --export "$BC_PODMAN_DIR/warm.tar.zst" --compress zstd pr >>"$BENCH_TMP/bc-podman.log" 2>&1 ||
		{ tail -n5 "$BENCH_TMP/bc-podman.log" >&2; bench_die "podman checkpoint failed"; }
	BC_P_BYTES=$(stat -c %s "$BC_PODMAN_DIR/warm.tar.zst")
	t0=$(bench_now_ms)
	bc_podman container restore --import "$BC_PODMAN_DIR/warm.tar.zst" --name pr2 >>"$BENCH_TMP/bc-podman.log" 2>&1 ||
		{ tail -n5 "$BENCH_TMP/bc-podman.log" >&2; bench_die "podman restore --import failed"; }
	t1=$(bc_podman_wait) || bench_die "podman's restored redis never answered"
	BC_P_RESTORE=$((t1 - t0))
	bench_log "clone: podman restore --import to PONG $BC_P_RESTORE ms"
	bc_podman rm --force --time 0 pr pr2 >/dev/null 2>&1 || bench_log "podman rm failed"
}

bench_clone() {
	bench_begin clone
	command -v podman >/dev/null || bench_die "clone needs podman (apt-get install podman)"
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
		apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 || bench_die "apt-get install redis-server failed"
	fi
	local keys=${BENCH_CLONE_KEYS:-4000000} t0 t1 pid cold one five remote copy rest snap
	BC_IMAGE_TAR=$BENCH_TMP/redis.tar
	bench_log "clone: making the redis image with $keys keys"
	bash "$BENCH_ROOT/scripts/redis-image.sh" "$BC_IMAGE_TAR" "$keys" >&2 || bench_die "redis-image.sh failed"
	bench_log "clone: starting hosts ${BC_HOSTS[*]} in $BC_DIR"
	bc_down
	bench_on_exit bc_down
	bc_script up >>"$BENCH_TMP/clone-dev.log" 2>&1 || { cat "$BENCH_TMP/clone-dev.log" >&2; bench_die "dev-cluster.sh up failed"; }
	bench_wait 60 "all clone hosts alive" bc_alive_all >/dev/null || bench_die "the clone hosts are not all alive"
	bc_ferry image import redis "$BC_IMAGE_TAR" >/dev/null 2>&1 || bench_die "image import failed"

	bench_log "clone: cold start"
	t0=$(bench_now_ms)
	bc_ferry run --name redis --node bc-1 redis -- "${BC_REDIS_ARGS[@]}" >/dev/null || bench_die "ferry run redis failed"
	pid=$(bc_pid redis)
	t1=$(bc_wait_pong 180 "$pid") || bench_die "the cold redis never answered"
	cold=$((t1 - t0))
	bench_log "clone: cold start to PONG $cold ms; template create"
	snap=$(bc_ferry template create warm --from redis --copies 0 -o json) || bench_die "template create failed"
	# Each step runs several times (a single run's spread here is tens of ms against targets of a few hundred)
	# and the figure is the median; every run starts after a pause in which the last run's clones were removed
	# and the node's spare daemons replaced, so that no run measures the previous one's background work.
	local runs=${BENCH_CLONE_RUNS:-5} fruns=${BENCH_CLONE_FIVE_RUNS:-3} i t c ones=() fives=() remotes=() copies=() node worst=-1
	local one_cpus=() five_cpus=() one_cpu five_cpu ncpu
	ncpu=$(nproc)
	for i in $(seq "$runs"); do
		bench_log "clone: one clone on bc-1 ($i of $runs)"
		BC_STEP=one-$i
		read -r t _ c < <(bc_clone warm --node bc-1) || bench_die "clone on bc-1 failed"
		bc_rm_last
		ones+=("$t") one_cpus+=("$c")
		sleep 2
	done
	one=$(bench_stat median "${ones[@]}")
	bench_log "clone: one clone ${ones[*]} ms (median $one)"
	for i in $(seq "$fruns"); do
		bench_log "clone: five at once on bc-1 ($i of $fruns)"
		BC_STEP=five-$i
		read -r t _ c < <(bc_clone warm --node bc-1 --count 5) || bench_die "5 clones on bc-1 failed"
		bc_rm_last
		fives+=("$t") five_cpus+=("$c")
		sleep 2
	done
	five=$(bench_stat median "${fives[@]}")
	one_cpu=$(bench_stat median "${one_cpus[@]}")
	five_cpu=$(bench_stat median "${five_cpus[@]}")
	bench_log "clone: five clones ${fives[*]} ms (median $five)"
	# The first clone on each of the two other nodes (neither holds the checkpoint): the figure is the run
	# whose time beyond its transfer is the longer.
	for node in bc-2 bc-3; do
		BC_STEP=other-node-$node
		read -r t copy _ < <(bc_clone warm --node "$node") || bench_die "clone on $node failed"
		bc_rm_last
		remotes+=("$t") copies+=("$copy")
		bench_log "clone: clone on $node $t ms (transfer $copy ms)"
		if [ $((t - copy)) -gt "$worst" ]; then worst=$((t - copy)) remote=$t; fi
		sleep 2
	done
	copy=$((remote - worst))
	bc_ferry rm --force redis >/dev/null || true
	bc_podman_run

	rest=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["snapshot"]["size"])' <<<"$snap")
	bench_figure clone_same_node_ms "ferry clone on the same node: start to first PONG" "$one" ms "<=$((cold / 20))"
	bench_figure clone_vs_podman_ms "ferry clone on the same node vs 1/5 of Podman's restore --import" "$one" ms "<=$((BC_P_RESTORE / 5))"
	bench_figure clone_five_ms "5 clones at once: start to the last PONG" "$five" ms "<=$((2 * one))"
	bench_figure clone_one_cpu_ms "one clone: CPU time the machine used, start to PONG (all processes)" "$one_cpu" ms
	bench_figure clone_five_cpu_ms "5 clones at once: CPU time the machine used, start to the last PONG" "$five_cpu" ms
	bench_figure clone_five_floor_ms "5 clones at once: the least time that CPU time takes on $ncpu CPUs" "$((five_cpu / ncpu))" ms
	bench_figure clone_other_node_ms "clone on a node without the checkpoint: start to first PONG" "$remote" ms "<=$((copy + one))"
	bench_figure clone_transfer_ms "of which sending the checkpoint to that node" "$copy" ms
	bench_figure checkpoint_bytes "the warm checkpoint (CRIU images, writable layer, record)" "$rest" bytes
	bench_baseline cold_start_ms "cold start (ferry run) to first PONG" "$cold" ms
	bench_baseline podman_cold_start_ms "Podman: cold start (podman run) to first PONG" "$BC_P_COLD" ms
	bench_baseline podman_restore_ms "Podman: restore --import of the warm checkpoint to first PONG" "$BC_P_RESTORE" ms
	bench_baseline podman_checkpoint_bytes "Podman: checkpoint archive (tar.zst)" "$BC_P_BYTES" bytes
	bench_note "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) from Debian with $keys keys (DEBUG POPULATE $keys key 100) in its image's RDB file; PING from one probe per redis (bash, /dev/tcp, a try every 5 ms, waiting on the connection for the answer), all clones of a step at once"
	bench_note "ferry: --net none, PING through the container's network namespace; Podman $(podman --version | awk '{print $3}') with runc, --network host on port $BC_PODMAN_PORT, --ulimit host, own --root"
	bench_note "a target of the form <= X is computed from figures of this same run (cold start, Podman's restore, one clone, transfer)"
	bench_note "one clone on bc-1, each run (ms): ${ones[*]}; five at once, each run: ${fives[*]}; the figures are the medians"
	bench_note "CPU time (from /proc/stat, the machine's busy time in ${ncpu} CPUs, ms): one clone, each run: ${one_cpus[*]}; five at once: ${five_cpus[*]}"
	bench_note "first clone on bc-2 / bc-3: ${remotes[0]} / ${remotes[1]} ms, of which the transfer ${copies[0]} / ${copies[1]} ms; the figure is the one with more time beyond its transfer"
	bench_finish
}
