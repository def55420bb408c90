// Package e2e holds l2lb's end-to-end tests: real l2lbd processes in the
// node namespaces of the lab (test/lab), against a real kube-apiserver, seen
// through real clients. The TestKubeProxy tests follow a Service address
// all the way: l2lbd answers ARP, a real kube-proxy forwards to pods (lab.Pod).
// TestBootedNodes runs the daemon as users do instead:
// the freshly built .deb installed with apt on booted systemd machines
// (lab.Machine), driven with systemctl and read with journalctl. The tests
// run as root; `make test` runs them.
package e2e
