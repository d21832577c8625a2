#!/usr/bin/env bash
# install-deps.sh: installs what Ferry's agent, tests, demo and benchmarks need on a Debian host.
#
# Idempotent: quiet when nothing is to do; prints what it installed. Everything comes from Debian's packages
# (through the apt sources this host already uses) and the Go module proxy; nothing else is downloaded.
#
# CRIU: Ferry needs CRIU >= 4.2 (see the project notes: older releases fail on current kernels). If the host's
# own criu is recent enough and passes `criu check`, it is used. Otherwise a minimal Debian unstable tree holding
# criu is made with debootstrap under $FERRY_CRIU_TREE, and a copy of that tree's criu is put on PATH as criu,
# with the tree's loader and libraries written into it (patchelf), so that it runs on the host's own filesystem
# and starts as any program (where that fails, a shell wrapper that runs the tree's loader on it).
#
# It ends with `criu check` and a tiny dump and restore of a throw-away process, and fails loudly if either fails.
set -euo pipefail

CRIU_MIN_MAJOR=4
CRIU_MIN_MINOR=2
CRIU_TREE=${FERRY_CRIU_TREE:-/opt/ferry/criu-sid}
CRIU_WRAPPER=${FERRY_CRIU_WRAPPER:-/usr/local/bin/criu}
PACKAGES=(runc iptables busybox-static iproute2 debootstrap ca-certificates util-linux procps kmod psmisc patchelf)

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and a CRIU wrapper); try: sudo $0"
command -v apt-get >/dev/null || die "this script needs a Debian-like host with apt-get"

apt_updated=
apt_update() {
	[ -n "$apt_updated" ] && return 0
	apt-get update -qq >/dev/null || die "apt-get update failed; check the host's apt sources and network"
	apt_updated=1
}

install_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	apt_update
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
		|| die "apt-get install ${missing[*]} failed"
	say "installed Debian packages: ${missing[*]}"
}

# Go toolchain: the build needs go >= 1.26 (go.mod); Debian's own go is too old, so only check and explain.
check_go() {
	if ! command -v go >/dev/null; then
		[ -x /usr/local/go/bin/go ] && export PATH=$PATH:/usr/local/go/bin
	fi
	command -v go >/dev/null || die "Go 1.26 or newer is needed on PATH to build ferry"
}

criu_version_ok() { # $1: criu binary
	local v major minor
	v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
	[ -n "$v" ] || return 1
	major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
	[ "$major" -gt "$CRIU_MIN_MAJOR" ] || { [ "$major" -eq "$CRIU_MIN_MAJOR" ] && [ "$minor" -ge "$CRIU_MIN_MINOR" ]; }
}

criu_works() { # $1: criu binary
	criu_version_ok "$1" && "$1" check >/dev/null 2>&1
}

# The Debian mirror this host's apt already uses (deb822 or one-line format), so debootstrap uses no other.
debian_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		uri=$(awk '
			/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }
			/^deb / { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	return 1
}

# Puts the tree's criu on PATH as $CRIU_WRAPPER: a copy of the binary whose program interpreter is the tree's
# loader and whose library path (DT_RPATH, which also serves the libraries' own dependencies) is the tree's.
# Each CRIU start then costs one program start: a shell wrapper costs a shell and the loader started as a
# program on top (about 5 ms per start here, and runc starts CRIU twice per checkpoint or restore). The shell
# wrapper stays as the fallback where patchelf cannot do it.
write_wrapper() {
	local tmp loader tree
	tmp=$(mktemp "${CRIU_WRAPPER}.XXXXXX")
	tree=$(readlink -f "$CRIU_TREE")
	loader=$(readlink -f "$CRIU_TREE/lib64/ld-linux-x86-64.so.2" || true)
	if command -v patchelf >/dev/null && [ "${loader#"$tree"/}" != "$loader" ] && [ -x "$loader" ] &&
		cp "$CRIU_TREE/usr/sbin/criu" "$tmp" &&
		patchelf --set-interpreter "$loader" --force-rpath \
			--set-rpath "$tree/usr/lib/x86_64-linux-gnu:$tree/lib/x86_64-linux-gnu" "$tmp" 2>/dev/null &&
		chmod 0755 "$tmp" && criu_works "$tmp"; then
		mv -f "$tmp" "$CRIU_WRAPPER"
		return 0
	fi
	say "patchelf could not give criu the tree's loader; using a shell wrapper"
	cat >"$tmp" <<WRAP
#!/bin/sh
# criu from a Debian unstable tree made by Ferry's scripts/install-deps.sh (the host's own criu is too old).
T=$CRIU_TREE
exec "\$T/lib64/ld-linux-x86-64.so.2" --library-path "\$T/lib/x86_64-linux-gnu:\$T/usr/lib/x86_64-linux-gnu" "\$T/usr/sbin/criu" "\$@"
WRAP
	chmod 0755 "$tmp"
	mv -f "$tmp" "$CRIU_WRAPPER"
}

install_criu() {
	local host_criu
	host_criu=$(command -v criu || true)
	if [ -n "$host_criu" ] && criu_works "$host_criu"; then
		# A shell wrapper an earlier version of this script wrote: replaced by the patched copy.
		if [ "$host_criu" = "$CRIU_WRAPPER" ] && [ -x "$CRIU_TREE/usr/sbin/criu" ] &&
			grep -qs "made by Ferry's scripts/install-deps.sh" "$CRIU_WRAPPER"; then
			write_wrapper
			hash -r
			criu_works "$CRIU_WRAPPER" || die "$CRIU_WRAPPER does not work after it was rewritten"
		fi
		return 0
	fi
	if [ -x "$CRIU_TREE/usr/sbin/criu" ]; then
		write_wrapper
		criu_works "$CRIU_WRAPPER" && { hash -r; return 0; }
		say "the CRIU tree at $CRIU_TREE does not work; making it again"
	fi
	local mirror
	mirror=$(debian_mirror) || die "no Debian mirror found in the apt sources; cannot debootstrap a CRIU tree"
	say "making a Debian unstable tree with criu in $CRIU_TREE (debootstrap, about 90 s)"
	rm -rf "$CRIU_TREE.new"
	mkdir -p "$(dirname "$CRIU_TREE")"
	if ! debootstrap --variant=minbase --include=criu sid "$CRIU_TREE.new" "$mirror" >"$CRIU_TREE.log" 2>&1; then
		tail -n 20 "$CRIU_TREE.log" >&2
		die "debootstrap of the CRIU tree failed (log: $CRIU_TREE.log)"
	fi
	rm -rf "$CRIU_TREE"
	mv "$CRIU_TREE.new" "$CRIU_TREE"
	write_wrapper
	hash -r
	criu_version_ok "$CRIU_WRAPPER" || die "the criu in $CRIU_TREE is $("$CRIU_WRAPPER" --version | head -n1), older than $CRIU_MIN_MAJOR.$CRIU_MIN_MINOR"
	say "installed criu $("$CRIU_WRAPPER" --version | sed -n 's/^Version: *//p') as $CRIU_WRAPPER"
}

# A tiny dump and restore of a throw-away process in its own PID namespace.
criu_selftest() {
	local dir pid rpid
	dir=$(mktemp -d /tmp/ferry-criu-selftest.XXXXXX)
	# shellcheck disable=SC2064
	setsid sleep 600 </dev/null >/dev/null 2>&1 &
	pid=$!
	disown "$pid" 2>/dev/null || true
	# shellcheck disable=SC2064
	trap "kill -9 $pid >/dev/null 2>&1 || true; rm -rf '$dir'" RETURN
	sleep 0.2
	if ! criu dump -t "$pid" -D "$dir" -o dump.log >/dev/null 2>&1; then
		tail -n 15 "$dir/dump.log" >&2 || true
		die "criu dump of a test process failed (see above)"
	fi
	if ! criu restore -D "$dir" -d -o restore.log --pidfile "$dir/pid" >/dev/null 2>&1; then
		tail -n 15 "$dir/restore.log" >&2 || true
		die "criu restore of a test process failed (see above)"
	fi
	rpid=$(cat "$dir/pid" 2>/dev/null || true)
	[ -n "$rpid" ] && kill -0 "$rpid" 2>/dev/null || die "criu restore said it worked but the test process is not running"
	kill -9 "$rpid" 2>/dev/null || true
}

check_go
install_packages "${PACKAGES[@]}"
install_criu
out=$(criu check 2>&1) || { printf '%s\n' "$out" >&2; die "criu check failed"; }
criu_selftest
