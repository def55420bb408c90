#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian/Ubuntu machine, as root,
# idempotently: Debian packages only when a command is missing (retrying the
# mirror, which is sometimes unreachable for a minute), then the cached
# kube-apiserver, kubectl and kube-proxy build and the cached Debian root of the booted
# lab nodes. Prints nothing when everything is present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# command -> Debian package
declare -A need=(
	[etcd]=etcd-server
	[arping]=iputils-arping
	[ping]=iputils-ping
	[ndisc6]=ndisc6
	[tcpdump]=tcpdump
	[ip]=iproute2
	[curl]=curl
	[make]=make
	[gcc]=gcc
	[lintian]=lintian
	[rpm]=rpm
	[rpmlint]=rpmlint
	[systemd-analyze]=systemd
	[debootstrap]=debootstrap
	[systemd-nspawn]=systemd-container
	[nft]=nftables # kube-proxy's nftables mode drives the kernel through it
)
missing=()
# debootstrap (run as root only, below) checks the mirror's signatures with
# Debian's archive keys, a recommendation --no-install-recommends leaves out.
if [ "$(id -u)" = 0 ] && [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
	missing+=(debian-archive-keyring)
fi
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done

apt_retry() {
	local i
	for i in 1 2 3 4 5; do
		if "$@"; then return 0; fi
		echo "deps.sh: '$*' failed (attempt $i/5); retrying in $((i * 10))s" >&2
		sleep $((i * 10))
	done
	return 1
}

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: missing ${missing[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt_retry apt-get update -qq
	apt_retry apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

"$here/kubebin/build.sh" >/dev/null
# The booted lab nodes' root: debootstrap needs root, and only the lab
# tests (which need root anyway) boot machines.
if [ "$(id -u)" = 0 ]; then
	"$here/rootfs/build.sh" >/dev/null
fi
