#!/usr/bin/env bash
# demo.sh: a fresh three-host local cluster (vg-1..vg-3, network namespaces on this machine), the number
# printer started on vg-1, and `ferry migrate np vg-1 vg-2` while it runs: its counter goes on, on vg-2, in
# the same log. Everything it made is removed at the end (or on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (it makes network namespaces and runs containers): sudo $0" >&2; exit 1; }
bash scripts/install-deps.sh
export PATH=$PATH:/usr/local/go/bin

if [ -e /run/netns/vg-1 ]; then
	echo "demo.sh: a local cluster is already up (vg-1 exists); remove it first with: scripts/dev-cluster.sh down" >&2
	exit 1
fi
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
export FERRY_DEV_DIR=$work/cluster FERRY_BIN=$work/ferry FERRY_DEV_BRIDGE=ferrydemo0
go build -o "$FERRY_BIN" ./cmd/ferry
bash scripts/busybox-image.sh "$work/busybox.tar"
ferry() { "$FERRY_BIN" "$@"; }
export FERRY_ADDR=unix://$FERRY_DEV_DIR/vg-1/ferry.sock

cleanup() {
	set +e
	echo
	echo "cleaning up: scripts/dev-cluster.sh down"
	bash scripts/dev-cluster.sh down >/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

step "a fresh local cluster: three hosts vg-1..vg-3 (network namespaces), an agent in each"
bash scripts/dev-cluster.sh up | grep -E '^(NAME|vg-)'

step "import a busybox image on vg-1"
ferry image import busybox "$work/busybox.tar" 2>/dev/null

step "run the number printer on vg-1"
ferry run --name np --node vg-1 busybox -- sh -c 'i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done'
sleep 2
ferry ps
echo "its log so far ends with: $(ferry logs np | tail -n 3 | tr '\n' ' ')"

step "follow its log from vg-3 while it moves (ferry logs -f np)"
"$FERRY_BIN" --addr "unix://$FERRY_DEV_DIR/vg-3/ferry.sock" logs -f np >"$work/followed.log" 2>"$work/follower.err" &
follower=$!
sleep 1

step "ferry migrate np vg-1 vg-2 (while it runs)"
ferry migrate np vg-1 vg-2
ferry ps
sleep 2

step "the counter goes on, on vg-2, in the same log"
ferry logs np | tail -n 8 | tr '\n' ' '; echo
kill "$follower" 2>/dev/null; wait "$follower" 2>/dev/null || true
total=$(wc -l <"$work/followed.log")
seq_ok=$(awk 'BEGIN{ok=1} {if ($1 != NR-1) ok=0} END{print ok}' "$work/followed.log")
if [ "$seq_ok" = 1 ] && [ "$total" -gt 0 ]; then
	echo "ferry logs -f, following from vg-3, printed $total lines: 0..$((total - 1)), each once, in order,"
	echo "across the move from vg-1 to vg-2: nothing lost, nothing repeated, no restart from 0."
else
	echo "the sequence is broken:" >&2
	awk '{if ($1 != NR-1) {print "  line " NR ": " $0; exit}}' "$work/followed.log" >&2
	exit 1
fi
