#!/usr/bin/env bash
# Builds the Debian 12 root that booted lab nodes start from (systemd as PID 1
# under systemd-nspawn), with debootstrap from the mirror apt already uses, and
# caches it. Prints the root's directory.
#
# The cache key is a hash of everything that shapes the tree (suite, mirror,
# package list, this script), so changing any of them builds a new root beside
# the old one. Nodes never write to it: each boots it read-only under a tmpfs
# overlay (systemd-nspawn --volatile=overlay).
set -euo pipefail

suite=bookworm
# What l2lb's unit and package need, and what the tests run inside: systemd
# and its tools (systemctl, journalctl, systemd-analyze, systemd-sysusers),
# dbus for systemctl, iproute2; apt is part of minbase.
packages=systemd,systemd-sysv,dbus,iproute2

# The first deb.debian.org-style URI of the host's apt sources.
mirror=$(sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\)\/*$/\1/p; s/^deb[[:space:]]\+\(\S*\/debian\)\/*[[:space:]].*/\1/p' \
	/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
mirror=${L2LB_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}

key=$({ echo "$suite $mirror $packages"; cat "$0"; } | sha256sum | cut -c1-12)
cache=${L2LB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/l2lb}
root=$cache/rootfs-$suite-$key
if [ -x "$root/usr/lib/systemd/systemd" ]; then
	echo "$root"
	exit 0
fi

mkdir -p "$cache"
# One build at a time; a second caller waits and finds the root built.
exec 9>"$cache/rootfs.lock"
flock -w 1800 9 || { echo "rootfs: another build holds $cache/rootfs.lock" >&2; exit 1; }
if [ -x "$root/usr/lib/systemd/systemd" ]; then
	echo "$root"
	exit 0
fi

work=$(mktemp -d "$cache/rootfs-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "rootfs: debootstrap $suite from $mirror (a few minutes)" >&2
for i in 1 2 3; do
	rm -rf "$work/root"
	if debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" >"$work/log" 2>&1; then
		break
	fi
	tail -n 20 "$work/log" >&2
	[ "$i" = 3 ] && { echo "rootfs: debootstrap failed 3 times" >&2; exit 1; }
	echo "rootfs: debootstrap failed (attempt $i/3); retrying in $((i * 10))s" >&2
	sleep $((i * 10))
done

r=$work/root
# apt inside a node installs the local .deb only: never recommends, and no
# timers that would take the dpkg lock in the middle of a test.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$r/etc/apt/apt.conf.d/90l2lb-lab"
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
	fstrim.timer systemd-networkd.service systemd-resolved.service console-getty.service; do
	ln -sf /dev/null "$r/etc/systemd/system/$unit"
done
# The lab configures each node's network namespace; nothing inside may.
rm -f "$r/etc/hostname"
: >"$r/etc/machine-id"
rm -rf "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"*

mv "$r" "$root"
echo "$root"
