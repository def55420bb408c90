// Package e2e holds l2lb's end-to-end tests: real l2lbd processes in the
// node namespaces of the lab (test/lab), against a real kube-apiserver, seen
// through real clients. The tests run as root; `make test` runs them.
package e2e
