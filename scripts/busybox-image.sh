#!/usr/bin/env bash
# busybox-image.sh OUT: builds a minimal busybox root filesystem from Debian's busybox-static.
#
# OUT ending in .tar writes a rootfs tarball (for `ferry image import busybox OUT`); any other OUT is made a
# rootfs directory. Extra files can be added with FERRY_IMAGE_EXTRA="SRC:DEST ..." (DEST inside the image),
# which is how the tests put the project's own static workloads into the image.
set -euo pipefail
out=${1:?usage: busybox-image.sh OUT(.tar|DIR)}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-image: $bb is missing; run scripts/install-deps.sh (Debian package busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,root,var/log,usr/bin,usr/sbin,data}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
	[ "$applet" = busybox ] && continue
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo ferry >"$root/etc/hostname"
for pair in ${FERRY_IMAGE_EXTRA:-}; do
	src=${pair%%:*}; dest=${pair#*:}
	mkdir -p "$root/$(dirname "$dest")"
	cp "$src" "$root/$dest"
done

case "$out" in
*.tar)
	tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out.tmp" . && mv "$out.tmp" "$out" ;;
*)
	rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$root" "$out" ;;
esac
