#!/usr/bin/env bash
# dev-cluster.sh up|down|status|env: a local cluster of three hosts, vg-1..vg-3, on this one machine.
#
# Each host is a network namespace with its own address on a bridge that has no route out of the machine; an
# agent runs in each (started by scripts/provision.sh, the same path the Vagrant VMs use). The command line
# reaches them through their root-only sockets: `eval "$(scripts/dev-cluster.sh env)"` points it at vg-1.
# `down` removes everything `up` made, also after a crash (it finds things by name, not by what it recorded).
#
# Settings (environment): FERRY_DEV_HOSTS (3), FERRY_DEV_PREFIX (vg), FERRY_DEV_NET (10.77.0),
# FERRY_DEV_BRIDGE (ferrybr0), FERRY_DEV_DIR (/var/lib/ferry-dev), FERRY_DEV_PORT (7400), FERRY_BIN (built here),
# FERRY_DEV_AGENT_FLAGS (extra flags for every agent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hosts=${FERRY_DEV_HOSTS:-3}
prefix=${FERRY_DEV_PREFIX:-vg}
net=${FERRY_DEV_NET:-10.77.0}
bridge=${FERRY_DEV_BRIDGE:-ferrybr0}
dir=${FERRY_DEV_DIR:-/var/lib/ferry-dev}
port=${FERRY_DEV_PORT:-7400}
export PATH=$PATH:/usr/local/go/bin

name_of() { echo "$prefix-$1"; }
addr_of() { echo "$net.$((10 + $1))"; }
veth_of() { echo "fv-$prefix$1"; }
sock_of() { echo "$dir/$(name_of "$1")/ferry.sock"; }

need_root() { [ "$(id -u)" -eq 0 ] || { echo "dev-cluster.sh: run as root" >&2; exit 1; }; }

make_net() {
	if ! ip link show "$bridge" >/dev/null 2>&1; then
		ip link add "$bridge" type bridge
		ip addr add "$net.1/24" dev "$bridge"
		ip link set "$bridge" up
	fi
	local i ns veth
	for i in $(seq "$hosts"); do
		ns=$(name_of "$i") veth=$(veth_of "$i")
		[ -e "/run/netns/$ns" ] || ip netns add "$ns"
		if ! ip link show "$veth" >/dev/null 2>&1; then
			ip link add "$veth" type veth peer name eth0 netns "$ns"
			ip link set "$veth" master "$bridge" up
			ip -n "$ns" addr add "$(addr_of "$i")/24" dev eth0
			ip -n "$ns" link set eth0 up
			ip -n "$ns" link set lo up
		fi
	done
}

up() {
	need_root
	bash "$here/install-deps.sh"
	mkdir -p "$dir"
	local bin=${FERRY_BIN:-$dir/ferry}
	if [ -z "${FERRY_BIN:-}" ]; then (cd "$here/.." && go build -o "$bin" ./cmd/ferry); fi
	make_net
	local i first
	first="$(addr_of 1):$port"
	for i in $(seq "$hosts"); do
		local name data
		name=$(name_of "$i") data=$dir/$name
		if [ -S "$data/ferry.sock" ] && "$bin" --addr "unix://$data/ferry.sock" node info >/dev/null 2>&1; then
			echo "$name: already up"
			continue
		fi
		local join=()
		[ "$i" -gt 1 ] && join=(--join "$first")
		bash "$here/provision.sh" --name "$name" --bind "$(addr_of "$i"):$port" "${join[@]}" \
			--token-file "$dir/token" --data-dir "$data" --binary "$bin" --netns "$name" --log "$dir/$name.log" \
			-- ${FERRY_DEV_AGENT_FLAGS:-}
	done
	echo
	"$bin" --addr "unix://$(sock_of 1)" node ls || true
	cat <<MSG

The local cluster is up: hosts $(name_of 1)..$(name_of "$hosts") on $bridge ($net.0/24), logs in $dir/*.log.
Point the command line at $(name_of 1) with:

    eval "\$(scripts/dev-cluster.sh env)"      # or: export FERRY_ADDR=unix://$(sock_of 1)

and at another host with --addr unix://$dir/NAME/ferry.sock. Remove it all with: scripts/dev-cluster.sh down
MSG
}

env_cmd() {
	echo "export FERRY_ADDR=unix://$(sock_of 1)"
	echo "export PATH=$dir:\$PATH"
}

status() {
	local i name pid state
	for i in $(seq "$hosts"); do
		name=$(name_of "$i")
		state="no namespace"
		[ -e "/run/netns/$name" ] && state="namespace $(addr_of "$i")"
		pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then state="$state, agent pid $pid"; else state="$state, no agent"; fi
		echo "$name: $state"
	done
	[ -x "$dir/ferry" ] && [ -S "$(sock_of 1)" ] && "$dir/ferry" --addr "unix://$(sock_of 1)" node ls 2>/dev/null || true
}

down() {
	need_root
	local i name data
	# Agents first (so they restart nothing), found by their data dirs even without pid files.
	pkill -f -- "--data-dir $dir/" 2>/dev/null || true
	sleep 0.5
	pkill -9 -f -- "--data-dir $dir/" 2>/dev/null || true
	for data in "$dir"/*/; do
		[ -d "$data/runc" ] || continue
		for id in $(runc --root "$data/runc" list -q 2>/dev/null); do
			runc --root "$data/runc" kill --all "$id" KILL >/dev/null 2>&1 || true
			runc --root "$data/runc" delete --force "$id" >/dev/null 2>&1 || true
		done
	done
	# Shims whose containers are gone end by themselves; any left are ferry shims of these data dirs.
	for pid in $(pgrep -f "ferry shim" 2>/dev/null); do
		tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q "$dir/" && kill -9 "$pid" 2>/dev/null || true
	done
	# Anything else working in these data dirs (a CRIU page server or lazy-pages daemon of a migration cut short).
	for p in /proc/[0-9]*; do
		case $(readlink "$p/cwd" 2>/dev/null) in "$dir"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
	done
	awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" || true; done
	for i in $(seq "$hosts"); do
		name=$(name_of "$i")
		for cg in /sys/fs/cgroup/*/ferry/"$name"; do
			[ -d "$cg" ] || continue
			find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
			rmdir "$cg" 2>/dev/null || true
		done
		ip link del "$(veth_of "$i")" 2>/dev/null || true
		ip netns del "$name" 2>/dev/null || true
	done
	rmdir /sys/fs/cgroup/*/ferry 2>/dev/null || true
	ip link del "$bridge" 2>/dev/null || true
	rm -rf "$dir"
	echo "dev cluster removed"
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
env) env_cmd ;;
*) echo "usage: dev-cluster.sh up|down|status|env" >&2; exit 2 ;;
esac
