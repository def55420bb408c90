#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and kube-proxy of one Kubernetes version from the Go module
# proxy and caches them by version. Prints the cache directory holding the binaries.
#
# k8s.io/kubernetes cannot be required plainly: its go.mod replaces every staging
# module with ./staging/src/..., which the proxy's zip does not resolve from a
# dependent module. A throwaway module requires it and replaces each staging
# module by the published module of the matching v0.x version instead.
set -euo pipefail

version=${KUBE_VERSION:-v1.35.4}
cache=${L2LB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/l2lb}/kube-$version
bins=(kube-apiserver kubectl kube-proxy)

have_all() {
	for b in "${bins[@]}"; do [ -x "$cache/$b" ] || return 1; done
}
if have_all; then
	echo "$cache"
	exit 0
fi

staging_version="v0.${version#v1.}"
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

export GOFLAGS=-mod=mod GOWORK=off
go mod init l2lb.test/kubebin >/dev/null 2>&1
go mod edit -require "k8s.io/kubernetes@$version"
modfile=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$modfile" ] || { echo "build.sh: cannot download k8s.io/kubernetes@$version" >&2; exit 1; }
grep -E '=> \./staging/' "$modfile" | awk '{print $1}' | while read -r mod; do
	go mod edit -replace "$mod=$mod@$staging_version"
done
cat > tools.go <<GO
//go:build tools

package kubebin

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
go mod tidy >&2
for b in "${bins[@]}"; do
	[ -x "$cache/$b" ] && continue # an earlier run built it
	echo "build.sh: building $b $version (a few minutes on 2 cores)" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" \
		-o "$work/$b" "k8s.io/kubernetes/cmd/$b" >&2
	mv "$work/$b" "$cache/$b"
done
echo "$cache"
