package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// hostWarnings checks the host for settings that make l2lb misbehave whatever
// its configuration; root is "/" except in tests.
func hostWarnings(root string) []string {
	_, err := os.Stat(filepath.Join(root, "sys/class/net/kube-ipvs0"))
	ipvs := err == nil
	ignore := readInt(filepath.Join(root, "proc/sys/net/ipv4/conf/all/arp_ignore"))
	announce := readInt(filepath.Join(root, "proc/sys/net/ipv4/conf/all/arp_announce"))
	if w := strictARPWarning(ipvs, ignore, announce); w != "" {
		return []string{w}
	}
	return nil
}

// strictARPWarning: kube-proxy in IPVS mode binds every LoadBalancer IP to
// kube-ipvs0 on every node, and without strict ARP every node's kernel then
// answers ARP for every IP (MetalLB's most reported problem, #153).
func strictARPWarning(ipvs bool, arpIgnore, arpAnnounce int) string {
	if !ipvs || arpIgnore >= 1 && arpAnnounce >= 2 {
		return ""
	}
	return "warning: kube-proxy runs in IPVS mode (kube-ipvs0 exists) without strict ARP " +
		"(net.ipv4.conf.all.arp_ignore=" + strconv.Itoa(arpIgnore) + ", arp_announce=" + strconv.Itoa(arpAnnounce) + "): " +
		"every node's kernel answers ARP for every LoadBalancer IP. Set ipvs.strictARP: true in kube-proxy's " +
		"configuration (kubectl -n kube-system edit configmap kube-proxy) and restart kube-proxy."
}

// readInt reads a sysctl-style file; a missing or odd file reads as 0.
func readInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
