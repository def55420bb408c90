package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// TestDemo is `make demo`: the whole story for a newcomer, narrated on
// stdout. It runs only when L2LB_DEMO=1, since it is a show, not a check.
func TestDemo(t *testing.T) {
	if os.Getenv("L2LB_DEMO") != "1" {
		t.Skip("the demo runs with `make demo` (L2LB_DEMO=1)")
	}
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	step := func(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
	show := func(out []byte) {
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			fmt.Println("    " + line)
		}
	}

	step("Bringing up the lab: etcd, a real kube-apiserver, and three node namespaces plus a client on one bridge")
	l := lab.Start(t, lab.Options{Nodes: 3})
	for _, n := range l.Nodes {
		say("    %s  %s  MAC %s", n.Name, n.IPv4, n.MAC)
	}
	say("    client  %s  MAC %s", l.Net.Client.IPv4, l.Net.Client.MAC)

	step("Giving every node two pods: network namespaces behind the node's bridge, each a web server that answers its own name")
	pods := l.AddPods(t, 2)
	for _, p := range pods {
		say("    %-14s %s  on %s", p.Name, p.IPv4, p.Node.Name)
	}
	say("    (each node routes the other nodes' pod ranges to them, as a CNI plugin would)")

	step("Starting kube-proxy %s in nftables mode on every node: it turns Services into rules that forward to pods", lab.KubeVersion)
	l.StartKubeProxy(t)
	say("    kube-proxy is running and healthy on %d nodes", len(l.Nodes))

	step("Starting l2lbd on every node, each with its own config and kubeconfig")
	ds := startDaemons(t, l, "pools:\n  - name: lan\n    addresses: [198.51.100.200-198.51.100.250]\n", "")
	say("    pool lan: 198.51.100.200-198.51.100.250")

	step("Creating a LoadBalancer Service with kubectl")
	kubectl := func(stdin string, args ...string) []byte {
		ctx, cancel := context.WithTimeout(ctxBg, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, l.Kubectl, append([]string{"--kubeconfig", l.AdminKubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return out
	}
	show(kubectl("apiVersion: v1\nkind: Service\nmetadata: {name: demo, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80, protocol: TCP}]\n", "apply", "-f", "-"))
	ip := waitIngress(t, l, "default", "demo", 1)[0]
	show(kubectl("", "get", "service", "demo", "-o", "wide"))
	say("    l2lbd gave it %s from the pool", ip)

	step("Listing the pods as the Service's endpoints (the lab has no kubelet or controller-manager to do it)")
	svc, err := l.Client.CoreV1().Services("default").Get(ctxBg, "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.SetPodEndpoints(ctxBg, svc, pods...)
	show(kubectl("", "get", "endpointslices", "-l", "kubernetes.io/service-name=demo"))

	step("Who answers ARP for %s? The client asks with arping", ip)
	o := owner(t, l, ip)
	say("    only %s (MAC %s) answers. Its l2lbd says:", o.Name, o.MAC)
	show(daemonLines(daemonOn(ds, o), 0, ip))

	step("kube-proxy on %s has rules for %s: port 80 goes to one of the %d pods, picked at random", o.Name, ip, len(pods))
	rules, err := o.Exec(ctxBg, "nft", "list", "table", "ip", "kube-proxy")
	if err != nil {
		t.Fatal(err)
	}
	show(nftLines(rules, ip))
	say("    (nft list table ip kube-proxy: the Service address's entry, then one DNAT per pod;")
	say("    every node has the same rules, so whichever node l2lbd picks can forward)")

	curls := func(n int) {
		for range n {
			body, err := l.Net.Client.Curl(ctxBg, ip, 80)
			if err != nil {
				t.Fatal(err)
			}
			p, err := lab.PodNamed(pods, body)
			if err != nil {
				t.Fatal(err)
			}
			say("    curl http://%s/  ->  %-14s (pod %s on %s)", ip, body, p.IPv4, p.Node.Name)
		}
	}
	step("From the client: curl http://%s/ eight times, a new connection each time", ip)
	curls(8)
	say("    every connection went to %s (the client's neighbour entry below); its kube-proxy", o.Name)
	say("    forwarded each to a pod, on its own node or another one (externalTrafficPolicy: Cluster)")
	neigh, _ := l.Net.Client.Exec(ctxBg, "ip", "neigh", "show", ip.String())
	show(neigh)

	step("Killing l2lbd on %s (SIGKILL: no goodbye) and timing the failover", o.Name)
	d := daemonOn(ds, o)
	start := time.Now()
	d.proc.Signal(syscall.SIGKILL)
	newMAC, took := neighMovesFrom(t, l, ip, strings.ToLower(o.MAC.String()), start, 15*time.Second)
	n := nodeByMAC(l, newMAC)
	say("    %v after the kill, the client's entry points at %s (%s)", took.Round(time.Millisecond), n.Name, newMAC)
	say("    (the new owner announced itself with gratuitous ARP; the client did not ask)")
	neigh, _ = l.Net.Client.Exec(ctxBg, "ip", "neigh", "show", ip.String())
	show(neigh)
	say("    l2lbd on %s says:", n.Name)
	nd := daemonOn(ds, n)
	show(daemonLines(nd, 0, ip))

	step("curl again: now %s's kube-proxy forwards; %s's pods still answer, since only its l2lbd died", n.Name, o.Name)
	curls(6)

	step("Stopping %s's l2lbd gracefully (SIGTERM, as systemctl stop does)", n.Name)
	mark := len(nd.proc.Output())
	start = time.Now()
	nd.proc.Signal(syscall.SIGTERM)
	lastMAC, took := neighMovesFrom(t, l, ip, newMAC, start, 15*time.Second)
	last := nodeByMAC(l, lastMAC)
	say("    %v later %s answers for %s. l2lbd on %s said goodbye:", took.Round(time.Millisecond), last.Name, ip, n.Name)
	nd.proc.Wait(5 * time.Second)
	show(daemonLines(nd, mark, ip))
	say("    and l2lbd on %s took over at once, without waiting for a Lease to expire:", last.Name)
	show(daemonLines(daemonOn(ds, last), 0, ip))
	curls(2)

	step("Cleaning up: every namespace, link and process of the lab goes away")
	say("")
}

// daemonLines returns the info and warning lines d logged from byte from
// on that concern ip or the daemon's own start and stop.
func daemonLines(d *daemon, from int, ip netip.Addr) []byte {
	var keep []string
	for _, line := range strings.Split(d.proc.Output()[from:], "\n") {
		if strings.Contains(line, "level=DEBUG") {
			continue
		}
		if strings.Contains(line, "ip="+ip.String()) || strings.Contains(line, `msg="l2lbd st`) ||
			strings.Contains(line, "member Lease") {
			keep = append(keep, line)
		}
	}
	return []byte(strings.Join(keep, "\n"))
}

// nftLines picks from kube-proxy's table what concerns ip: its entry in
// the Service map and the DNATs to the Service's pods.
func nftLines(table []byte, ip netip.Addr) []byte {
	var keep []string
	for _, line := range strings.Split(string(table), "\n") {
		// A map element may share its line with the map's opening brace.
		line = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "elements = { "), ",")
		if strings.Contains(line, ip.String()+" . tcp . 80") || strings.Contains(line, "dnat to 198.18.") {
			keep = append(keep, line)
		}
	}
	return []byte(strings.Join(keep, "\n"))
}
