package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostWarnings(t *testing.T) {
	tests := []struct {
		name             string
		ipvs             bool
		ignore, announce string
		want             string
	}{
		{"iptables mode", false, "0", "0", ""},
		{"ipvs with strict ARP", true, "1", "2", ""},
		{"ipvs without strict ARP", true, "0", "0", "arp_ignore=0, arp_announce=0"},
		{"ipvs half strict", true, "1", "0", "arp_ignore=1, arp_announce=0"},
	}
	for _, tc := range tests {
		root := t.TempDir()
		conf := filepath.Join(root, "proc/sys/net/ipv4/conf/all")
		os.MkdirAll(conf, 0o755)
		os.WriteFile(filepath.Join(conf, "arp_ignore"), []byte(tc.ignore+"\n"), 0o644)
		os.WriteFile(filepath.Join(conf, "arp_announce"), []byte(tc.announce+"\n"), 0o644)
		if tc.ipvs {
			os.MkdirAll(filepath.Join(root, "sys/class/net/kube-ipvs0"), 0o755)
		}
		got := strings.Join(hostWarnings(root), "\n")
		if tc.want == "" && got != "" || tc.want != "" && (!strings.Contains(got, tc.want) || !strings.Contains(got, "ipvs.strictARP: true")) {
			t.Errorf("%s: got %q, want one containing %q", tc.name, got, tc.want)
		}
	}
}
