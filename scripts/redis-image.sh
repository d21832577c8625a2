#!/usr/bin/env bash
# redis-image.sh OUT.tar [KEYS]: a root filesystem tarball (for `ferry image import redis OUT.tar`) holding the
# host's redis-server from Debian's package (install-deps does not install it; `apt-get install redis-server`)
# with the libraries it links, and a dataset of KEYS keys (default 4000000, about 150 MB as an RDB file) in
# /data/dump.rdb, which redis-server loads at start when run with --dir /data: a slow-booting service.
set -euo pipefail
out=${1:?usage: redis-image.sh OUT.tar [KEYS]}
keys=${2:-4000000}
srv=$(command -v redis-server) || { echo "redis-image: redis-server is missing; apt-get install redis-server" >&2; exit 1; }
cli=$(command -v redis-cli) || { echo "redis-image: redis-cli is missing; apt-get install redis-tools" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
root=$work/rootfs
mkdir -p "$root"/{usr/bin,etc,data,tmp}
chmod 1777 "$root/tmp"
cp -L "$srv" "$root/usr/bin/redis-server"
for lib in $(ldd "$srv" | grep -o '/[^ ]*'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# The dataset: a redis-server of the host on a unix socket only, populated, saved into the image's /data.
"$srv" --port 0 --unixsocket "$work/redis.sock" --dir "$root/data" --dbfilename dump.rdb --save '' --appendonly no \
	--enable-debug-command yes --daemonize no --logfile "$work/redis.log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && break; sleep 0.1; done
ok() { [ "$("$cli" -s "$work/redis.sock" "$@")" = OK ] || { echo "redis-image: redis-cli $* failed" >&2; exit 1; }; }
ok DEBUG POPULATE "$keys" key 100
ok SAVE
"$cli" -s "$work/redis.sock" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait "$pid" 2>/dev/null || true
pid=
[ -s "$root/data/dump.rdb" ] || { echo "redis-image: no dataset was saved; see the log:" >&2; cat "$work/redis.log" >&2; exit 1; }

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out.tmp" . && mv "$out.tmp" "$out"
