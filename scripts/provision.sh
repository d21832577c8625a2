#!/usr/bin/env bash
# provision.sh: makes a host a ferry node: installs the dependencies and the binary, starts the agent, and joins
# the cluster. The Vagrantfile runs it in each VM (as a systemd service); scripts/dev-cluster.sh runs it for each
# network-namespace host on this machine (as a process inside the namespace). One path for both.
#
#   provision.sh --name vg-2 --bind 10.77.0.12:7400 [--join 10.77.0.11:7400] [--token-file F]
#                [--data-dir D] [--binary PATH] [--netns NS --log FILE | --systemd] [-- EXTRA AGENT FLAGS]
#
# The first node (no --join) makes the cluster and writes a join token to --token-file; the others read it.
set -euo pipefail

name= bind= join= token_file= data_dir= binary= netns= log= mode= extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--name) name=$2; shift 2 ;;
	--bind) bind=$2; shift 2 ;;
	--join) join=$2; shift 2 ;;
	--token-file) token_file=$2; shift 2 ;;
	--data-dir) data_dir=$2; shift 2 ;;
	--binary) binary=$2; shift 2 ;;
	--netns) netns=$2; mode=netns; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--systemd) mode=systemd; shift ;;
	--) shift; extra=("$@"); break ;;
	*) echo "provision.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$name" ] && [ -n "$bind" ] && [ -n "$mode" ] || {
	echo "usage: provision.sh --name NAME --bind ADDR:PORT [--join ADDR:PORT] [--token-file F] (--netns NS | --systemd)" >&2
	exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
data_dir=${data_dir:-/var/lib/ferry}
token_file=${token_file:-$data_dir.token}

bash "$here/install-deps.sh"
export PATH=$PATH:/usr/local/go/bin

# The binary: given, or built from this checkout.
if [ -z "$binary" ]; then
	binary=/usr/local/bin/ferry
	(cd "$here/.." && go build -o "$binary.new" ./cmd/ferry)
	if ! cmp -s "$binary.new" "$binary"; then mv "$binary.new" "$binary"; echo "provision: installed $binary"; else rm -f "$binary.new"; fi
fi

args=(agent --name "$name" --data-dir "$data_dir" --bind "$bind")
args+=("${extra[@]}")
if [ -n "$join" ] && [ ! -e "$data_dir/identity/key" ]; then
	for _ in $(seq 100); do [ -s "$token_file" ] && break; sleep 0.2; done
	[ -s "$token_file" ] || { echo "provision: no join token in $token_file; provision the first node first" >&2; exit 1; }
	args+=(--join "$join" --token "$(cat "$token_file")")
fi
mkdir -p "$data_dir"

case $mode in
systemd)
	# On `systemctl stop` (a reboot, a kernel update) the agent first moves its containers to other nodes,
	# for at most the shutdown timeout; systemd waits a little longer than that before it kills it.
	shutdown_timeout=240
	args+=(--evacuate-on-shutdown --shutdown-timeout "${shutdown_timeout}s")
	cat >/etc/systemd/system/ferry.service <<UNIT
[Unit]
Description=Ferry node agent ($name)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$binary ${args[*]}
Restart=on-failure
KillMode=process
# --evacuate-on-shutdown moves the containers away when the agent is stopped: give it the time.
TimeoutStopSec=$((shutdown_timeout + 30))

[Install]
WantedBy=multi-user.target
UNIT
	systemctl daemon-reload
	systemctl enable --now ferry.service >/dev/null
	;;
netns)
	[ -e "/run/netns/$netns" ] || { echo "provision: no network namespace $netns" >&2; exit 1; }
	# nsenter (network only): `ip netns exec` would remount /sys and hide the cgroup mounts from runc.
	setsid nsenter --net="/run/netns/$netns" "$binary" "${args[@]}" </dev/null >>"${log:-$data_dir.log}" 2>&1 &
	echo $! >"$data_dir.pid"
	;;
esac

# Wait until the agent answers on its socket, then (first node) write the join token for the others.
up=
for _ in $(seq 150); do
	if "$binary" --addr "unix://$data_dir/ferry.sock" node info >/dev/null 2>&1; then up=1; break; fi
	sleep 0.2
done
[ -n "$up" ] || { echo "provision: the agent $name did not start; see ${log:-$data_dir.log}" >&2; exit 1; }
if [ -z "$join" ] && [ ! -s "$token_file" ]; then
	for _ in $(seq 100); do
		"$binary" --addr "unix://$data_dir/ferry.sock" cluster token >"$token_file.tmp" 2>/dev/null && break
		sleep 0.2
	done
	[ -s "$token_file.tmp" ] || { echo "provision: could not get a join token from $name" >&2; exit 1; }
	chmod 600 "$token_file.tmp" && mv "$token_file.tmp" "$token_file"
fi
echo "provision: $name is up (agent at $bind, data in $data_dir)"
