#!/usr/bin/env bash
# demo.sh: a fresh agent, the number printer, a checkpoint and a restore, and its log going on.
# Everything it starts is removed at the end (or on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (it runs containers): sudo $0" >&2; exit 1; }
bash scripts/install-deps.sh
export PATH=$PATH:/usr/local/go/bin

work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
go build -o "$work/ferry" ./cmd/ferry
bash scripts/busybox-image.sh "$work/busybox.tar"
ferry=$work/ferry
data=$work/data
export FERRY_ADDR=unix://$data/ferry.sock

agent_pid=
cleanup() {
	set +e
	"$ferry" rm --force np >/dev/null 2>&1
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	for m in $(awk -v d="$data" '$5 ~ "^"d {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m"; done
	rm -rf "$work"
}
trap cleanup EXIT

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

step "start an agent (ferry agent --dev --name demo)"
"$ferry" agent --dev --name demo --data-dir "$data" >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do [ -S "$data/ferry.sock" ] && break; sleep 0.1; done
"$ferry" node info

step "import a busybox image"
"$ferry" image import busybox "$work/busybox.tar"
"$ferry" image ls

step "run the number printer"
"$ferry" run --name np busybox -- sh -c 'i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done'
sleep 2
"$ferry" ps
echo "log so far: $("$ferry" logs np | tail -n 3 | tr '\n' ' ')"

step "checkpoint it (CRIU dumps it; the container stops)"
"$ferry" checkpoint np
"$ferry" ps
last=$("$ferry" logs np | tail -n 1)
echo "last number before the checkpoint: $last"
sleep 1

step "restore it (the manifest is checked first, then CRIU restores it)"
"$ferry" restore np
sleep 1.5
step "its log goes on from where it was"
"$ferry" logs np | awk -v last="$last" '$1 >= last - 2' | head -n 12 | tr '\n' ' '; echo
total=$("$ferry" logs np | wc -l)
seq_ok=$("$ferry" logs np | awk 'BEGIN{ok=1} {if ($1 != NR-1) ok=0} END{print ok}')
if [ "$seq_ok" = 1 ]; then
	echo "all $total lines are 0..$((total - 1)), each once, in order: the counter went on across the checkpoint"
else
	echo "the sequence is broken: see $work" >&2; exit 1
fi
