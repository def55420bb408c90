package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// hostState is what a lab may leave behind: namespaces, links and this test
// process's children.
type hostState struct {
	netns, links []string
	children     []string
}

func snapshot(t *testing.T) hostState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	netns, err := listNetns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	links, err := listLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(netns)
	slices.Sort(links)
	return hostState{netns: netns, links: links, children: children(t)}
}

// children lists the processes whose parent is this test process.
func children(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == fmt.Sprint(os.Getpid()) {
			kids = append(kids, e.Name()+" "+s[:i+1])
		}
	}
	slices.Sort(kids)
	return kids
}

// processesMentioning lists processes whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if strings.Contains(string(data), s) {
			found = append(found, e.Name()+" "+strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	return found
}

func diffState(t *testing.T, before, after hostState) {
	t.Helper()
	if !slices.Equal(before.netns, after.netns) {
		t.Errorf("namespaces after teardown:\n got %v\nwant %v", after.netns, before.netns)
	}
	if !slices.Equal(before.links, after.links) {
		t.Errorf("links after teardown:\n got %v\nwant %v", after.links, before.links)
	}
	if !slices.Equal(before.children, after.children) {
		t.Errorf("child processes after teardown:\n got %v\nwant %v", after.children, before.children)
	}
}

func TestNetwork(t *testing.T) {
	before := snapshot(t)
	var id string
	t.Run("up", func(t *testing.T) {
		start := time.Now()
		n := Network(t, 3)
		t.Logf("network of 3 nodes up in %v", time.Since(start))
		id = n.run.id
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		if want := "l2b" + id; n.Bridge != want {
			t.Errorf("Bridge = %q, want %q", n.Bridge, want)
		}
		for i, node := range n.Nodes {
			if want := fmt.Sprintf("198.51.100.%d", 11+i); node.IPv4.String() != want {
				t.Errorf("node %d IPv4 = %v, want %v", i, node.IPv4, want)
			}
			if want := fmt.Sprintf("2001:db8:100::%d", 11+i); node.IPv6.String() != want {
				t.Errorf("node %d IPv6 = %v, want %v", i, node.IPv6, want)
			}
			if len(node.Name) > 15 {
				t.Errorf("name %q longer than an interface name may be", node.Name)
			}
			mac, err := n.Client.ARPResolve(ctx, node.IPv4)
			if err != nil || mac.String() != node.MAC.String() {
				t.Errorf("ARPResolve(%v) = %v, %v; want %v", node.IPv4, mac, err, node.MAC)
			}
			mac, err = n.Client.NDPResolve(ctx, node.IPv6)
			if err != nil || mac.String() != node.MAC.String() {
				t.Errorf("NDPResolve(%v) = %v, %v; want %v", node.IPv6, mac, err, node.MAC)
			}
			// ping makes the kernel resolve; the neighbour cache then has it.
			if out, err := n.Client.Exec(ctx, "ping", "-c1", "-W2", node.IPv6.String()); err != nil {
				t.Errorf("ping %v: %v\n%s", node.IPv6, err, out)
			}
			mac, state, err := n.Client.Neigh(ctx, node.IPv6)
			if err != nil || mac.String() != node.MAC.String() || state != "REACHABLE" {
				t.Errorf("Neigh(%v) = %v, %q, %v; want %v REACHABLE", node.IPv6, mac, state, err, node.MAC)
			}
			out, err := node.Exec(ctx, "sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore", "net.ipv4.conf.all.arp_announce", "net.ipv6.conf.eth0.accept_dad")
			if got := strings.Fields(string(out)); err != nil || !slices.Equal(got, []string{"1", "2", "0"}) {
				t.Errorf("node sysctls arp_ignore, arp_announce, accept_dad = %v, %v; want [1 2 0]", got, err)
			}
		}

		// An address on lo of a node is not answered for (strictARP).
		lo := netipMust("198.51.100.240/32")
		if err := n.Nodes[0].AddAddr(ctx, "lo", lo); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
		if mac, err := n.Client.ARPResolve(short, lo.Addr()); err == nil {
			t.Errorf("ARPResolve(%v on lo) = %v, want no reply", lo.Addr(), mac)
		}
		cancelShort()
		if err := n.Nodes[0].DelAddr(ctx, "lo", lo); err != nil {
			t.Error(err)
		}

		// A node added later is on the segment too.
		extra := n.AddNode(t)
		if mac, err := n.Client.ARPResolve(ctx, extra.IPv4); err != nil || mac.String() != extra.MAC.String() {
			t.Errorf("ARPResolve(added node %v) = %v, %v; want %v", extra.IPv4, mac, err, extra.MAC)
		}

		// Link down keeps the addresses; up again answers again.
		if err := extra.SetLinkDown(ctx, "eth0"); err != nil {
			t.Fatal(err)
		}
		short, cancelShort = context.WithTimeout(ctx, 1500*time.Millisecond)
		if _, err := n.Client.ARPResolve(short, extra.IPv4); err == nil {
			t.Errorf("ARPResolve of a node whose link is down succeeded")
		}
		cancelShort()
		if err := extra.SetLinkUp(ctx, "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Client.ARPResolve(ctx, extra.IPv4); err != nil {
			t.Errorf("ARPResolve after link up: %v", err)
		}

		// Do runs in the namespace: a listener there is reachable from the client.
		var ln net.Listener
		err := n.Nodes[1].Do(func() error {
			var err error
			ln, err = net.Listen("tcp", ":8080")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.0 200 OK\r\n\r\nhello from n1\n")
				c.Close()
			}
		}()
		if body, err := n.Client.Curl(ctx, n.Nodes[1].IPv6, 8080); err != nil || body != "hello from n1" {
			t.Errorf("Curl(n1:8080) = %q, %v; want %q", body, err, "hello from n1")
		}

		// Processes: output captured, Wait reports the exit, leftovers are killed.
		p := n.Nodes[2].Start(t, "sh", "-c", "ip -br addr show dev eth0; exit 3")
		if err := p.Wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("Wait = %v, want exit status 3", err)
		}
		if !strings.Contains(p.Output(), "198.51.100.13/24") {
			t.Errorf("Output = %q, want the node's address", p.Output())
		}
		n.Nodes[2].Start(t, "sleep", "600")
		n.Client.Start(t, "sleep", "600")
	})
	diffState(t, before, snapshot(t))
	if ps := processesMentioning(t, "l2lb-"+id); len(ps) > 0 {
		t.Errorf("processes of the run still running: %v", ps)
	}
	if _, err := os.Stat(os.TempDir() + "/l2lb-lab-" + id); !os.IsNotExist(err) {
		t.Errorf("run directory still there: %v", err)
	}
}

func netipMust(s string) netip.Prefix { return netip.MustParsePrefix(s) }
