// Package lab is the l2lb test lab: real network namespaces on a Linux bridge,
// and, for end-to-end tests, a real etcd and kube-apiserver on the same
// machine.
//
// [Network] builds the Layer 2 segment only, in a tenth of a second: a bridge in
// the root namespace carrying 198.51.100.1/24 and 2001:db8:100::1/64, one
// client namespace (198.51.100.2, 2001:db8:100::2) and one namespace per node
// (198.51.100.11+i, 2001:db8:100::11+i, the IPv6 address reusing the IPv4
// digits), each with a veth renamed to eth0. Node namespaces behave like a
// kube-proxy node with strictARP (arp_ignore=1, arp_announce=2), so addresses
// bound on lo are not answered for by the kernel. Only documentation
// addresses are used, nothing is routed off the machine, and IPv6 addresses
// skip duplicate address detection so tests never wait for it.
// 198.51.100.200-250 and 2001:db8:100::200-2ff are left to the tests for
// Service IPs.
//
// [Net.AddHost] adds more hosts (198.51.100.3 on) that are neither client nor
// node, and [Hostile] sends malformed, forged and flooding ARP and NDP
// frames from one, counting what is answered.
//
// [Start] adds etcd and kube-apiserver (built by test/kubebin/build.sh), the
// RBAC and admission policies of examples/rbac.yaml (applied with kubectl,
// as a user does; it creates namespace l2lb-system), Ready Node objects, and
// a kubeconfig per node that reads, through tokenFile, a token of the
// l2lb-system/l2lbd ServiceAccount bound to that node's Node object.
//
// [Lab.AddPods] puts pods behind every node: network namespaces on a bridge
// cni0 in the node, with addresses from the node's /24 of 198.18.0.0/15
// (the benchmarking range, which exists only inside the node namespaces),
// each running an HTTP server that answers the pod's name; the nodes forward
// and route each other's pod ranges. [Lab.StartKubeProxy] then runs a real
// kube-proxy (nftables mode, built with kube-apiserver) on every node, so a
// Service address l2lbd announces reaches the pods as in a cluster. Tests
// about netio alone use the stand-in instead ([Lab.ServeHTTP] and
// [NS.BindOnLo]): the Service address on the node's lo and a server on the
// node itself.
//
// [Net.StartProber] is a client on the segment that asks for a set of
// addresses over and over (ARP and NDP) and records which MAC answers when,
// timestamped by the kernel at the client's interface.
//
// [Lab.Boot] turns a node into a [Machine]: a Debian 12 root (built once by
// test/rootfs/build.sh with debootstrap and cached) booted by systemd-nspawn
// with systemd as PID 1, in the node's own network namespace, so the rest of
// the lab sees the same node. Its root is read-only under a tmpfs overlay;
// commands run in it through nsenter.
//
// Only one lab exists on a machine at a time: go test runs packages in
// parallel processes, so Network and Start take an exclusive flock on
// /run/l2lb-lab.lock and wait (bounded) for it. Every name carries a short run
// id; everything created is removed by id at test cleanup, on failure and on
// SIGINT/SIGTERM too. Leftovers of a run that was killed outright are removed
// by the next lab and by `make lab-clean`.
//
// Everything needs root and the tools ip, arping, ndisc6 and curl (plus etcd
// for Start, nft for StartKubeProxy, and debootstrap and systemd-nspawn for Boot); without them the lab fails the test and says so, it never
// skips.
package lab
