package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

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
		l.ServeHTTP(n)
		say("    %s  %s  MAC %s", n.Name, n.IPv4, n.MAC)
	}
	say("    client  %s  MAC %s", l.Net.Client.IPv4, l.Net.Client.MAC)

	step("Starting l2lbd on every node, each with its own config and kubeconfig")
	ds := startDaemons(t, l, "pools:\n  - name: lan\n    addresses: [198.51.100.200-198.51.100.250]\n", "")
	say("    pool lan: 198.51.100.200-198.51.100.250")

	step("Creating a LoadBalancer Service with kubectl")
	kubectl := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(ctxBg, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, l.Kubectl, append([]string{"--kubeconfig", l.AdminKubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader("apiVersion: v1\nkind: Service\nmetadata: {name: demo, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80, protocol: TCP}]\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return out
	}
	show(kubectl("apply", "-f", "-"))
	ip := waitIngress(t, l, "default", "demo", 1)[0]
	show(kubectl("get", "service", "demo", "-o", "wide"))

	step("kube-proxy's part (a stand-in here): every node accepts traffic for %s", ip)
	standIn(t, l, ip)

	step("From the client: ping %s, then look at the kernel's neighbour entry", ip)
	o := owner(t, l, ip)
	mac := populateNeigh(t, l, ip)
	neigh, _ := l.Net.Client.Exec(ctxBg, "ip", "neigh", "show", ip.String())
	show(neigh)
	say("    %s is %s: only %s answers ARP for it", mac, o.Name, o.Name)
	body, err := l.Net.Client.Curl(ctxBg, ip, 80)
	if err != nil {
		t.Fatal(err)
	}
	say("    curl http://%s/  ->  %s", ip, body)

	step("Killing l2lbd on %s (SIGKILL: no goodbye) and timing the failover", o.Name)
	start := time.Now()
	daemonOn(ds, o).proc.Signal(syscall.SIGKILL)
	newMAC, took := neighMovesFrom(t, l, ip, mac, start, 15*time.Second)
	n := nodeByMAC(l, newMAC)
	say("    %v after the kill, the client's entry points at %s (%s)", took.Round(time.Millisecond), n.Name, newMAC)
	say("    (the new owner announced itself with gratuitous ARP; the client did not ask)")
	neigh, _ = l.Net.Client.Exec(ctxBg, "ip", "neigh", "show", ip.String())
	show(neigh)
	body, err = l.Net.Client.Curl(ctxBg, ip, 80)
	if err != nil {
		t.Fatal(err)
	}
	say("    curl http://%s/  ->  %s", ip, body)

	step("Stopping %s's l2lbd gracefully (SIGTERM, as systemctl stop does)", n.Name)
	start = time.Now()
	daemonOn(ds, n).proc.Signal(syscall.SIGTERM)
	lastMAC, took := neighMovesFrom(t, l, ip, newMAC, start, 15*time.Second)
	say("    %v later %s answers for %s", took.Round(time.Millisecond), nodeByMAC(l, lastMAC).Name, ip)

	step("Cleaning up: every namespace, link and process of the lab goes away")
	say("")
}
