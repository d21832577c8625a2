# transfer.sh: `scripts/bench.sh transfer` (sourced by bench.sh; uses lib.sh).
#
# On a fresh two-host dev cluster (scripts/dev-cluster.sh with its own prefix bt, subnet 10.76.0.0/24, bridge btbr
# and directory, so it never meets a developer's cluster), for one 256 MiB checkpoint-like directory (a real CRIU
# dump of `memload -mib 256`: half text-like, half random memory; made once, on this disk), BENCH_TRANSFER_RUNS (3)
# times each, all in the same run, from host bt-1 to host bt-2:
#   1. Ferry's stream: the sending agent's POST /v1/debug/send (over several SSH connections, zstd, every chunk
#      checked by SHA-256 on arrival, then discarded): throughput (raw MB/s, 1 MB = 1e6 bytes), bytes on the wire, and the sending agent's peak RSS
#      (VmHWM, restarted through clear_refs before the sends, read after them).
#   2. A plain TCP copy with no compression and no encryption (`tar -b 2048 -cf - | socat -b 1M` into
#      `socat -b 1M | wc -c`): the near-physical limit of the link. (With tar's and socat's default 10 KiB and 8 KiB
#      blocks the copy is bound by system calls, not by the link: 2-4x slower here.)
#   3. The manual way: `tar czf - DIR | ssh bt-2 'tar xzf - -C DEST'`, to an sshd started for the benchmark in
#      bt-2's namespace (temporary host and client keys, its own config, killed at the end).
# Ferry's runs and the plain copies alternate (Ferry, plain, Ferry, ...), so that both see the same load.
# Each send also records both agents' CPU time and minor page faults (from /proc/PID/stat).
# Targets (issue 4): Ferry >= 60% of the plain copy's throughput, >= 5x the manual way's, fewer bytes on the wire
# than the plain copy; the sending agent under 100 MiB of peak RSS.

BT_PREFIX=bt
BT_DIR=/tmp/ferry-bench-transfer
BT_HOSTS=(bt-1 bt-2)
BT_SSH_PORT=2222
BT_TCP_PORT=5555

bt_script() {
	FERRY_DEV_HOSTS=2 FERRY_DEV_PREFIX=$BT_PREFIX FERRY_DEV_NET=10.76.0 FERRY_DEV_BRIDGE=btbr \
		FERRY_DEV_DIR=$BT_DIR FERRY_DEV_PORT=7400 FERRY_DEV_AGENT_FLAGS= FERRY_BIN=$BENCH_BIN \
		bash "$BENCH_ROOT/scripts/dev-cluster.sh" "$1"
}

bt_ferry() {
	local host=$1
	shift
	"$BENCH_BIN" --addr "unix://$BT_DIR/$host/ferry.sock" "$@"
}

# bt_in HOST CMD...: runs CMD in HOST's network namespace (network only, like the agents).
bt_in() {
	local host=$1
	shift
	nsenter --net="/run/netns/$host" "$@"
}

bt_down() {
	if [ "${BENCH_STATUS:-0}" -ne 0 ] && [ -d "$BT_DIR" ]; then
		mkdir -p "$BENCH_RESULTS/transfer-failed-logs"
		cp "$BT_DIR"/*.log "$BENCH_TMP/transfer-dev.log" "$BENCH_RESULTS/transfer-failed-logs/" 2>/dev/null || true
		bench_log "agent logs of the failed run kept in $BENCH_RESULTS/transfer-failed-logs/"
	fi
	bt_script down >>"$BENCH_TMP/transfer-dev.log" 2>&1 || bench_log "dev-cluster.sh down failed; see above"
	local left
	left=$(ip netns list 2>/dev/null | grep -E "^$BT_PREFIX-[0-9]+" || true)
	[ -z "$left" ] || bench_log "namespaces left after down: $left"
}

bt_alive_all() {
	local h
	for h in "${BT_HOSTS[@]}"; do
		bt_ferry "${BT_HOSTS[0]}" node ls -o json | python3 -c '
import json, sys
n = sys.argv[1]
sys.exit(0 if any(x["name"] == n and x.get("status") == "alive" for x in (json.load(sys.stdin) or [])) else 1)' "$h" || return 1
	done
}

bt_up() {
	bench_log "transfer: starting hosts ${BT_HOSTS[*]} in $BT_DIR"
	bt_down
	bench_on_exit bt_down
	bt_script up >>"$BENCH_TMP/transfer-dev.log" 2>&1 || { cat "$BENCH_TMP/transfer-dev.log" >&2; bench_die "dev-cluster.sh up failed"; }
	bench_wait 60 "both transfer hosts alive" bt_alive_all || bench_die "the transfer hosts are not both alive"
}

# bt_make_data DIR: a 256 MiB checkpoint: CRIU's dump of memload -mib 256 (left running, then stopped); if CRIU
# cannot dump it, files of the same mix made with head -c of /dev/urandom and repeated text.
bt_make_data() {
	local dir=$1 memload pid out=$BENCH_TMP/bt-memload.out
	memload=$(bench_memload)
	rm -rf "$dir" && mkdir -p "$dir"
	setsid "$memload" -mib 256 -interval 1s -sum-every 1000 </dev/null >"$out" 2>&1 &
	pid=$!
	bench_on_exit "kill -9 $pid 2>/dev/null || true"
	if bench_wait 60 "memload ready" grep -q '^ready' "$out" &&
		criu dump -t "$pid" -D "$dir" --shell-job --leave-running -o dump.log >/dev/null 2>&1; then
		rm -f "$dir/dump.log"
		BT_DATA_KIND="CRIU dump of memload -mib 256 (criu dump --leave-running)"
	else
		bench_log "transfer: criu dump of memload failed ($(tail -n1 "$dir/dump.log" 2>/dev/null)); generating files instead"
		rm -rf "$dir" && mkdir -p "$dir"
		yes 'line 00000000: the quick brown fox jumps over the lazy dog, again and again' | head -c $((128 << 20)) >"$dir/pages-text.img"
		head -c $((128 << 20)) /dev/urandom >"$dir/pages-random.img"
		BT_DATA_KIND="generated: 128 MiB repeated text + 128 MiB /dev/urandom"
	fi
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# bt_ferry_send DIR: one send bt-1 -> bt-2; prints "MBPS WIRE_BYTES RAW_BYTES WALL_MS".
bt_ferry_send() {
	local dir=$1 t0 t1 resp
	t0=$(bench_now_ms)
	resp=$(curl -sS --max-time 300 --unix-socket "$BT_DIR/${BT_HOSTS[0]}/ferry.sock" \
		-d "{\"dir\": \"$dir\", \"node\": \"${BT_HOSTS[1]}\"}" http://x/v1/debug/send) || { bench_log "debug send: curl failed"; return 1; }
	t1=$(bench_now_ms)
	python3 - "$resp" "$((t1 - t0))" <<'PY' || { bench_log "debug send failed: $resp"; return 1; }
import json, sys
d = json.loads(sys.argv[1])
if not isinstance(d, dict) or "stats" not in d:
    sys.exit(1)
s = {k.lower(): v for k, v in d["stats"].items()}
raw, wire = s.get("rawbytes", s.get("raw_bytes")), s.get("wirebytes", s.get("wire_bytes"))
if not raw:
    sys.exit(1)
print(round(d["mb_per_s"], 1), wire, raw, sys.argv[2], s.get("streams", ""))
PY
}

# bt_cpu PID: the process's CPU time so far (user + system, ms) and its minor page faults: "MS FAULTS".
bt_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / hz), $8}' "/proc/$1/stat"
}

# bt_plain_copy DIR: tar cf | socat from bt-1 into socat | wc -c on bt-2; prints "MBPS BYTES MS".
bt_plain_copy() {
	local dir=$1 cnt=$BENCH_TMP/bt-plain.count rpid t0 t1 bytes
	local addr=10.76.0.12
	: >"$cnt"
	bt_in "${BT_HOSTS[1]}" sh -c "exec socat -u -b 1048576 TCP-LISTEN:$BT_TCP_PORT,bind=$addr,reuseaddr - | wc -c >'$cnt'" &
	rpid=$!
	bench_wait 10 "the plain receiver listening" bt_in "${BT_HOSTS[1]}" sh -c "ss -Hltn 'sport = :$BT_TCP_PORT' | grep -q ." || return 1
	t0=$(bench_now_ms)
	bt_in "${BT_HOSTS[0]}" sh -c "tar -b 2048 -cf - -C '$dir' . | socat -u -b 1048576 - TCP:$addr:$BT_TCP_PORT" || { bench_log "plain copy: sender failed"; return 1; }
	wait "$rpid" || { bench_log "plain copy: receiver failed"; return 1; }
	t1=$(bench_now_ms)
	bytes=$(cat "$cnt")
	echo "$(python3 -c "print(round($bytes / 1e6 / (($t1 - $t0) / 1000), 1))") $bytes $((t1 - t0))"
}

# bt_sshd_start: an sshd in bt-2's namespace on 10.76.0.12:BT_SSH_PORT with temporary keys.
bt_sshd_start() {
	local d=$BENCH_TMP/bt-sshd
	mkdir -p "$d" /run/sshd
	chmod 700 "$d"
	ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" >/dev/null
	ssh-keygen -q -t ed25519 -N '' -f "$d/client_key" >/dev/null
	cp "$d/client_key.pub" "$d/authorized_keys"
	cat >"$d/sshd_config" <<EOF
ListenAddress 10.76.0.12:$BT_SSH_PORT
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $d/sshd.pid
LogLevel ERROR
EOF
	# nsenter itself (not the bt_in function, whose subshell would be the pid) so that $! is sshd.
	nsenter --net="/run/netns/${BT_HOSTS[1]}" /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>>"$BENCH_TMP/bt-sshd.log" &
	BT_SSHD_PID=$!
	bench_on_exit "kill $BT_SSHD_PID 2>/dev/null || true; wait $BT_SSHD_PID 2>/dev/null || true"
	BT_SSH=(ssh -i "$d/client_key" -p "$BT_SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
		-o LogLevel=ERROR -o BatchMode=yes root@10.76.0.12)
	bench_wait 15 "sshd in ${BT_HOSTS[1]}" bt_in "${BT_HOSTS[0]}" "${BT_SSH[@]}" true || { cat "$BENCH_TMP/bt-sshd.log" >&2; bench_die "sshd in ${BT_HOSTS[1]} does not answer"; }
}

# bt_manual DIR DEST: tar czf | ssh bt-2 'tar xzf - -C DEST'; prints "MBPS GZIP_BYTES MS" (MB/s of DIR's bytes).
bt_manual() {
	local dir=$1 dest=$2 raw=$3 cnt=$BENCH_TMP/bt-manual.count t0 t1 bytes
	rm -rf "$dest" && mkdir -p "$dest"
	: >"$cnt"
	t0=$(bench_now_ms)
	bt_in "${BT_HOSTS[0]}" bash -c 'tar czf - -C "$1" . | tee >(wc -c >"$2") | "${@:4}" "tar xzf - -C $3"' _ \
		"$dir" "$cnt" "$dest" "${BT_SSH[@]}" || { bench_log "manual way failed"; return 1; }
	t1=$(bench_now_ms)
	bench_wait 10 "the gzip byte count" test -s "$cnt" || return 1
	bytes=$(cat "$cnt")
	cmp -s "$dir/pages-1.img" "$dest/pages-1.img" 2>/dev/null || [ ! -e "$dir/pages-1.img" ] || { bench_log "manual way: pages differ"; return 1; }
	rm -rf "$dest"
	echo "$(python3 -c "print(round($raw / 1e6 / (($t1 - $t0) / 1000), 1))") $bytes $((t1 - t0))"
}

bench_transfer() {
	[ "$(id -u)" -eq 0 ] || bench_die "the transfer benchmark makes network namespaces and runs agents: run it as root"
	command -v socat >/dev/null && [ -x /usr/sbin/sshd ] && command -v curl >/dev/null ||
		bench_die "transfer needs socat, openssh-server and curl (apt-get install socat openssh-server curl)"
	bench_begin transfer
	local runs=${BENCH_TRANSFER_RUNS:-3} data=$BENCH_TMP/bt-checkpoint i line raw files a b c d e
	local f_mbps=() f_wire=() f_ms=() p_mbps=() p_bytes=() p_ms=() m_mbps=() m_bytes=() m_ms=() streams=
	bt_up
	bench_log "transfer: making the 256 MiB checkpoint in $data"
	bt_make_data "$data"
	raw=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
	files=$(find "$data" -type f | wc -l)
	bench_log "transfer: $files files, $raw bytes ($BT_DATA_KIND)"
	bt_sshd_start

	local agent hwm_life
	agent=$(cat "$BT_DIR/${BT_HOSTS[0]}.pid")
	hwm_life=$(bench_hwm_kib "$agent")
	bench_hwm_reset "$agent"
	local rss0
	rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$agent/status")
	# Ferry's sends and the plain copies alternate, so that both see the same load on a shared machine.
	local hwm_send=0 kib receiver s0 r0 s1 r1 a0 a1 b0 b1 f_scpu=() f_rcpu=()
	receiver=$(cat "$BT_DIR/${BT_HOSTS[1]}.pid")
	for i in $(seq "$runs"); do
		s0=$(bt_cpu "$agent") r0=$(bt_cpu "$receiver")
		line=$(bt_ferry_send "$data") || bench_die "Ferry's stream failed (agent logs in $BT_DIR/*.log)"
		s1=$(bt_cpu "$agent") r1=$(bt_cpu "$receiver")
		read -r a b c d e <<<"$line"
		f_mbps+=("$a") f_wire+=("$b") f_ms+=("$d") streams=$e
		[ "$c" -eq "$raw" ] || bench_note "Ferry's stream carried $c raw bytes, the directory holds $raw"
		# CPU time and minor page faults of each agent during the send (the agents do little else meanwhile).
		read -r s0 a0 <<<"$s0"
		read -r s1 a1 <<<"$s1"
		read -r r0 b0 <<<"$r0"
		read -r r1 b1 <<<"$r1"
		f_scpu+=("$((s1 - s0))") f_rcpu+=("$((r1 - r0))")
		bench_log "transfer: Ferry run $i: $a MB/s, $b bytes on the wire, $d ms; CPU sender $((s1 - s0)) ms ($((a1 - a0)) minor faults), receiver $((r1 - r0)) ms ($((b1 - b0)) minor faults)"
		kib=$(bench_hwm_kib "$agent")
		[ "$kib" -gt "$hwm_send" ] && hwm_send=$kib
		line=$(bt_plain_copy "$data") || bench_die "plain copy failed"
		read -r a b c <<<"$line"
		p_mbps+=("$a") p_bytes+=("$b") p_ms+=("$c")
		bench_log "transfer: plain run $i: $a MB/s, $b bytes, $c ms"
	done
	for i in $(seq "$runs"); do
		line=$(bt_manual "$data" "$BENCH_TMP/bt-manual-dest" "$raw") || bench_die "the manual way failed"
		read -r a b c <<<"$line"
		m_mbps+=("$a") m_bytes+=("$b") m_ms+=("$c")
		bench_log "transfer: manual run $i: $a MB/s, $b bytes, $c ms"
	done

	local fm pm mm fw pw mw
	fm=$(bench_stat median "${f_mbps[@]}") pm=$(bench_stat median "${p_mbps[@]}") mm=$(bench_stat median "${m_mbps[@]}")
	fw=$(bench_stat median "${f_wire[@]}") pw=$(bench_stat median "${p_bytes[@]}") mw=$(bench_stat median "${m_bytes[@]}")
	bench_figure ferry_mbps "Ferry stream throughput (median)" "$fm" MB/s
	bench_figure ferry_wire_bytes "Ferry stream bytes on the wire (median)" "$fw" bytes "<$pw"
	bench_figure ferry_ms "Ferry stream time (median, curl wall)" "$(bench_stat median "${f_ms[@]}")" ms
	bench_figure ferry_vs_plain_pct "Ferry throughput / plain copy" "$(python3 -c "print(round(100 * $fm / $pm, 1))")" % ">=60"
	bench_figure ferry_vs_manual_x "Ferry throughput / manual way" "$(python3 -c "print(round($fm / $mm, 2))")" x ">=5"
	bench_figure ferry_ratio "Ferry wire / raw bytes" "$(python3 -c "print(round($fw / $raw, 3))")" ""
	bench_figure sender_cpu_ms "sending agent CPU time per send (median)" "$(bench_stat median "${f_scpu[@]}")" ms
	bench_figure receiver_cpu_ms "receiving agent CPU time per send (median)" "$(bench_stat median "${f_rcpu[@]}")" ms
	bench_figure agent_hwm_send_mib "sending agent peak RSS during the sends (VmHWM)" "$(bench_mib "$hwm_send")" MiB "<100"
	bench_figure agent_hwm_life_mib "sending agent peak RSS before the sends (VmHWM since start)" "$(bench_mib "$hwm_life")" MiB
	bench_baseline plain_mbps "plain TCP copy throughput (tar | socat, median)" "$pm" MB/s
	bench_baseline plain_bytes "plain TCP copy bytes on the wire (tar stream)" "$pw" bytes
	bench_baseline manual_mbps "manual way throughput (tar czf | ssh | tar xzf, median)" "$mm" MB/s
	bench_baseline manual_bytes "manual way bytes on the wire (gzip stream)" "$mw" bytes
	bench_baseline manual_ms "manual way time (median)" "$(bench_stat median "${m_ms[@]}")" ms
	bench_samples ferry_mbps MB/s "${f_mbps[@]}"
	bench_samples ferry_wire_bytes bytes "${f_wire[@]}"
	bench_samples sender_cpu_ms ms "${f_scpu[@]}"
	bench_samples receiver_cpu_ms ms "${f_rcpu[@]}"
	bench_samples plain_mbps MB/s "${p_mbps[@]}"
	bench_samples manual_mbps MB/s "${m_mbps[@]}"
	bench_samples manual_bytes bytes "${m_bytes[@]}"
	bench_note "data: $files files, $raw bytes: $BT_DATA_KIND; $runs runs of each, ${BT_HOSTS[0]} -> ${BT_HOSTS[1]} over the bench bridge (veth, one machine, 2 CPUs shared by sender and receiver)"
	bench_note "Ferry: POST /v1/debug/send on ${BT_HOSTS[0]}'s socket (${streams:-?} SSH channels, each on its own SSH connection, zstd; every chunk's SHA-256 checked on arrival, then discarded); MB/s = raw bytes / the agent's measured duration"
	bench_note "agent RSS: VmRSS before the sends $(bench_mib "$rss0") MiB; VmHWM restarted (clear_refs 5) before the sends and read after them"
	bench_note "plain: tar -b 2048 -cf - | socat -u -b 1048576 into socat -u -b 1048576 | wc -c (1 MiB blocks), no compression, no encryption; manual: tar czf - | ssh (OpenSSH $(ssh -V 2>&1 | cut -d, -f1 | sed 's/^OpenSSH_//'), default cipher) | tar xzf - on ${BT_HOSTS[1]}"
	bench_finish
}
