package netio

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

func TestAnswers(t *testing.T) {
	desired := desiredSet{
		ownedV4: "eth0",
		ownedV6: "eth0",
		hostV4:  "eth0",
		hostV6:  "eth0",
		freeV4:  "eth1",
	}
	host := addrSet{hostV4: {}, hostV6: {}}
	tests := []struct {
		name  string
		ip    netip.Addr
		iface string
		want  bool
	}{
		{"owned IPv4 on its interface", ownedV4, "eth0", true},
		{"owned IPv6 on its interface", ownedV6, "eth0", true},
		{"owned IPv4 on another interface", ownedV4, "eth1", false},
		{"owned IPv6 on another interface", ownedV6, "eth1", false},
		{"IP owned on another interface only", freeV4, "eth0", false},
		{"same IP on its own interface", freeV4, "eth1", true},
		{"not in the desired set", netip.MustParseAddr("198.51.100.250"), "eth0", false},
		{"IPv6 not in the desired set", freeV6, "eth0", false},
		{"IPv4 configured on the host", hostV4, "eth0", false},
		{"IPv6 configured on the host", hostV6, "eth0", false},
		{"zero address", netip.Addr{}, "eth0", false},
		{"empty interface name", ownedV4, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := answers(tt.ip, tt.iface, desired, host); got != tt.want {
				t.Errorf("answers(%v, %q) = %v, want %v", tt.ip, tt.iface, got, tt.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	in := map[netip.Addr]string{
		ownedV4: "eth0",
		netip.MustParseAddr("::ffff:198.51.100.203"):  "eth0", // mapped: kept as IPv4
		netip.MustParseAddr("2001:db8:100::203%eth0"): "eth0", // zone dropped
		netip.MustParseAddr("fe80::1"):                "eth0", // link-local: each host has its own
		netip.MustParseAddr("ff02::1"):                "eth0",
		netip.MustParseAddr("224.0.0.1"):              "eth0",
		netip.MustParseAddr("127.0.0.1"):              "eth0",
		netip.MustParseAddr("0.0.0.0"):                "eth0",
		netip.MustParseAddr("255.255.255.255"):        "eth0",
		netip.MustParseAddr("::"):                     "eth0",
		{}:                                            "eth0",
		netip.MustParseAddr("198.51.100.204"):         "", // no interface
	}
	got, dropped := normalize(in)
	want := desiredSet{
		ownedV4:                                  "eth0",
		netip.MustParseAddr("198.51.100.203"):    "eth0",
		netip.MustParseAddr("2001:db8:100::203"): "eth0",
	}
	if len(got) != len(want) || dropped != len(in)-len(want) {
		t.Fatalf("normalize = %v (dropped %d), want %v (dropped %d)", got, dropped, want, len(in)-len(want))
	}
	for ip, name := range want {
		if got[ip] != name {
			t.Errorf("normalize()[%v] = %q, want %q", ip, got[ip], name)
		}
	}
}

func TestSolicitedNode(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"2001:db8:100::200", "ff02::1:ff00:200"},
		{"2001:db8::abcd:ef12:3456", "ff02::1:ff12:3456"},
		{"fe80::1", "ff02::1:ff00:1"},
	}
	for _, tt := range tests {
		got := solicitedNode(netip.MustParseAddr(tt.ip))
		if got != netip.MustParseAddr(tt.want) {
			t.Errorf("solicitedNode(%s) = %v, want %s", tt.ip, got, tt.want)
		}
		if !isSolicitedNode(got) {
			t.Errorf("isSolicitedNode(%v) = false, want true", got)
		}
	}
	if isSolicitedNode(netip.MustParseAddr("ff02::1")) {
		t.Error("isSolicitedNode(ff02::1) = true, want false")
	}
}

func TestAnswerDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := newView()
		check := func(step string, want bool) {
			t.Helper()
			if got := v.expired(); got != want {
				t.Errorf("%s: expired = %v, want %v", step, got, want)
			}
		}
		check("no deadline", false)
		time.Sleep(1000 * time.Hour)
		check("no deadline, much later", false)
		v.answerUntil(time.Now().Add(time.Second))
		check("before the deadline", false)
		time.Sleep(time.Second)
		check("at the deadline", false)
		time.Sleep(time.Nanosecond)
		check("after the deadline", true)
		v.answerUntil(time.Now().Add(time.Second))
		check("after a later deadline", false)
		v.answerUntil(time.Now().Add(-time.Second))
		check("after an earlier deadline", true)
		v.answerUntil(time.Time{})
		check("deadline at the zero time", true)
	})
}
