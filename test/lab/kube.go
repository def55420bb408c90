package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeVersion is the Kubernetes version of the lab's kube-apiserver and
// kubectl, built by test/kubebin/build.sh.
const KubeVersion = "v1.35.4"

// The daemon's identity and the namespace of its Leases, as in
// examples/rbac.yaml.
const (
	ServiceAccountNamespace = "l2lb-system"
	ServiceAccountName      = "l2lbd"
	LeaseNamespace          = "l2lb-system"
)

// Options configure Start.
type Options struct {
	Nodes int // node namespaces, each with a Node object and a kubeconfig

	// APIServerArgs are appended to the kube-apiserver command line.
	APIServerArgs []string
}

// Lab is a Net plus a real etcd and kube-apiserver, reachable from every
// node namespace at API. Client is the admin API client; the client
// namespace is Net.Client, and Net.Nodes are the namespaces of Nodes.
type Lab struct {
	*Net
	API             string // https://198.51.100.1:<port>
	AdminKubeconfig string // file; system:masters
	Client          kubernetes.Interface
	Nodes           []*Node
	Kubectl         string // path of kubectl KubeVersion

	t         testing.TB
	pki       *pki
	apiArgs   []string
	apiserver *Proc
}

// Node is a node namespace with its Kubernetes Node object and a kubeconfig
// that reads, through tokenFile, a token of ServiceAccount l2lb-system/l2lbd
// bound to that Node object, as examples/kubeconfig.md makes it; the RBAC and
// admission policies of examples/rbac.yaml apply to it. Name is the Node
// object's name; the namespace's name is NS.Name.
type Node struct {
	*NS
	Name       string // Node object name: node-<i>, also the daemon's nodeName
	Kubeconfig string // file
	TokenFile  string // the token the kubeconfig reads; rewrite it to rotate

	kubectl string
}

// Start brings up the whole lab: Network, etcd and kube-apiserver, the RBAC
// of examples/rbac.yaml, a kubeconfig per node and Ready Node objects. It
// fails t if anything is missing or fails (kube-apiserver and kubectl come
// from $L2LB_KUBE_BIN, else from the cache of test/kubebin/build.sh) and
// tears everything down at t's cleanup. Methods of Lab fail t through
// t.Fatalf: call them from the goroutine of the test that started the lab,
// not from its subtests.
func Start(t testing.TB, opts Options) *Lab {
	t.Helper()
	tools := []string{"ip", "arping", "ndisc6", "curl", "etcd"}
	if err := requirements(tools...); err != nil {
		t.Fatalf("lab: %v", err)
	}
	bin, err := kubeBinDir()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	rbac, err := repoFile("examples/rbac.yaml")
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	r := begin(t, tools...)
	sw := &stopwatch{last: r.locked}
	n, err := r.network(opts.Nodes)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	sw.lap("network")
	l := &Lab{Net: n, Kubectl: filepath.Join(bin, "kubectl"), t: t}
	if err := l.startKube(filepath.Join(bin, "kube-apiserver"), opts.APIServerArgs, rbac, sw); err != nil {
		t.Fatalf("lab: %v", err)
	}
	for _, ns := range n.Nodes {
		node, err := l.addKubeNode(ns)
		if err != nil {
			t.Fatalf("lab: %v", err)
		}
		l.Nodes = append(l.Nodes, node)
	}
	sw.lap("nodes")
	t.Logf("lab: %s up in %v (%s)", r.id, time.Since(r.locked).Round(time.Millisecond), strings.Join(sw.laps, ", "))
	return l
}

// stopwatch names the phases of a bring-up, for the log.
type stopwatch struct {
	last time.Time
	laps []string
}

func (s *stopwatch) lap(name string) {
	now := time.Now()
	s.laps = append(s.laps, name+" "+now.Sub(s.last).Round(time.Millisecond).String())
	s.last = now
}

// AddNode adds a node namespace with its Node object and kubeconfig.
func (l *Lab) AddNode(t testing.TB) *Node {
	t.Helper()
	ns, err := l.Net.addNode()
	if err != nil {
		t.Fatalf("lab: add node: %v", err)
	}
	node, err := l.addKubeNode(ns)
	if err != nil {
		t.Fatalf("lab: add node: %v", err)
	}
	l.Nodes = append(l.Nodes, node)
	return node
}

// Node returns the node named name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Kubectl runs kubectl in the node's namespace with the node's kubeconfig,
// as the daemon on that node would reach the API.
func (n *Node) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return n.Exec(ctx, n.kubectl, append([]string{"--kubeconfig", n.Kubeconfig, "--request-timeout", "10s"}, args...)...)
}

func kubeBinDir() (string, error) {
	dir := os.Getenv("L2LB_KUBE_BIN")
	if dir == "" {
		cache := os.Getenv("L2LB_CACHE")
		if cache == "" {
			base := os.Getenv("XDG_CACHE_HOME")
			if base == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return "", fmt.Errorf("kube binaries: %w", err)
				}
				base = filepath.Join(home, ".cache")
			}
			cache = filepath.Join(base, "l2lb")
		}
		dir = filepath.Join(cache, "kube-"+KubeVersion)
	}
	for _, b := range []string{"kube-apiserver", "kubectl"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s %s not found in %s ($L2LB_KUBE_BIN, else the cache of test/kubebin/build.sh); build it first with `make deps` or test/kubebin/build.sh (a few minutes on 2 cores)",
				b, KubeVersion, dir)
		}
	}
	return dir, nil
}

// repoFile finds a file of this repository from the working directory (a
// package directory under go test) or, failing that, from this source file.
func repoFile(rel string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			mod, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && strings.HasPrefix(string(mod), "module github.com/l2lb/l2lb\n") {
				p := filepath.Join(d, rel)
				if _, err := os.Stat(p); err != nil {
					return "", fmt.Errorf("repository file: %w", err)
				}
				return p, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("repository file %s: no github.com/l2lb/l2lb go.mod above the working directory", rel)
}

func freePort(ip netip.Addr) (int, error) {
	ports, err := freePorts(ip, 1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts finds n distinct free ports on ip below the kernel's ephemeral
// range (32768 and up by default), so that no outgoing connection of another
// process takes one between now and the server's bind. The ports are held
// until all are found, so they differ.
func freePorts(ip netip.Addr, n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("free port: none found on %v", ip)
		}
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
		if err != nil {
			continue
		}
		held = append(held, ln)
		ports = append(ports, port)
	}
	return ports, nil
}

func (l *Lab) startKube(apiserver string, extraArgs []string, rbac string, sw *stopwatch) error {
	r := l.run
	var err error
	if l.pki, err = writePKI(r.dir); err != nil {
		return err
	}
	loopback := netip.MustParseAddr("127.0.0.1")
	etcdPorts, err := freePorts(loopback, 2)
	if err != nil {
		return err
	}
	etcdPort, peerPort := etcdPorts[0], etcdPorts[1]
	apiPort, err := freePort(BridgeV4)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcd, err := startProc(r, "etcd",
		"--name", "lab",
		"--data-dir", filepath.Join(r.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "lab="+peerURL,
		"--experimental-watch-progress-notify-interval", "1s",
		"--logger", "zap", "--log-level", "warn")
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	if err := waitHTTP(etcd, etcdURL+"/health", nil, "", 20*time.Second); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	sw.lap("etcd")

	l.API = "https://" + netip.AddrPortFrom(BridgeV4, uint16(apiPort)).String()
	f := func(name string) string { return filepath.Join(r.dir, name) }
	l.apiArgs = append([]string{apiserver,
		"--etcd-servers", etcdURL,
		"--bind-address", BridgeV4.String(),
		"--advertise-address", BridgeV4.String(),
		"--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", f("certs"),
		"--tls-cert-file", f("apiserver.crt"),
		"--tls-private-key-file", f("apiserver.key"),
		"--client-ca-file", f("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", f("sa.pub"),
		"--service-account-signing-key-file", f("sa.key"),
		"--token-auth-file", f("tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/24,fd96::/112",
		// $L2LB_LAB_PROFILING serves /debug/pprof for profiling a run
		// (test/profile-coldstart.sh).
		"--profiling=" + strconv.FormatBool(os.Getenv("L2LB_LAB_PROFILING") != ""),
	}, extraArgs...)
	if err := l.startAPI(); err != nil {
		return err
	}
	sw.lap("kube-apiserver")

	l.AdminKubeconfig = f("admin.kubeconfig")
	if err := writeKubeconfig(l.AdminKubeconfig, l.API, l.pki.caPEM, "lab-admin", &clientcmdapi.AuthInfo{Token: l.pki.adminToken}); err != nil {
		return err
	}
	cfg := l.restConfig(l.pki.adminToken)
	if l.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The API server creates its own namespaces right after it is ready;
	// tests use default and look at kube-system.
	if err := poll(ctx, func() error {
		_, err := l.Client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("namespace kube-system: %w", err)
	}
	// The example RBAC, applied with the real client, is what tests exercise.
	if out, err := command(ctx, nil, l.Kubectl, "--kubeconfig", l.AdminKubeconfig, "apply", "-f", rbac); err != nil {
		return fmt.Errorf("apply %s: %w", rbac, err)
	} else {
		r.logf("lab: %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "))
	}
	sw.lap("rbac")
	return nil
}

func (l *Lab) restConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            l.API,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: l.pki.caPEM},
		QPS:             100,
		Burst:           200,
		Timeout:         15 * time.Second,
		// The lab never goes through a proxy, whatever the environment says.
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
}

// writeKubeconfig writes what examples/kubeconfig.md's recipe produces: one
// cluster with the CA embedded, one user, one context.
func writeKubeconfig(path, server string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"lab": {Server: server, CertificateAuthorityData: caPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: auth},
		Contexts:       map[string]*clientcmdapi.Context{user: {Cluster: "lab", AuthInfo: user}},
		CurrentContext: user,
	}
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return nil
}

// startAPI starts kube-apiserver with l.apiArgs and waits until it is ready.
func (l *Lab) startAPI() error {
	p, err := startProc(l.run, l.apiArgs[0], l.apiArgs[1:]...)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	l.apiserver = p
	if err := waitHTTP(p, l.API+"/readyz", l.pki.caPEM, l.pki.adminToken, 60*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// StopAPI stops kube-apiserver (SIGTERM, SIGKILL after 10 s); etcd keeps
// the data.
func (l *Lab) StopAPI() {
	l.t.Helper()
	if l.apiserver == nil {
		l.t.Fatalf("lab: StopAPI: API server not running")
	}
	l.apiserver.stop(10 * time.Second)
	l.apiserver = nil
}

// StartAPI starts kube-apiserver again on the same address with the same
// etcd, and waits until it is ready.
func (l *Lab) StartAPI() {
	l.t.Helper()
	if l.apiserver != nil {
		l.t.Fatalf("lab: StartAPI: API server already running")
	}
	if err := l.startAPI(); err != nil {
		l.t.Fatalf("lab: StartAPI: %v", err)
	}
}

// waitHTTP polls url until it answers 200, p exits, or timeout passes.
func waitHTTP(p *Proc, url string, caPEM []byte, token string, timeout time.Duration) error {
	tr := &http.Transport{Proxy: nil}
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("exited (%v) before ready:\n%s", p.exitErr(), tail(p.Output(), 40))
		}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s: %s", url, resp.Status, body)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %w\n%s", timeout, last, tail(p.Output(), 40))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls fn every 100 ms until it succeeds or ctx ends.
func poll(ctx context.Context, fn func() error) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

// addKubeNode gives a node namespace its Node object (Ready, with both
// InternalIPs) and a kubeconfig reading a token of l2lb-system/l2lbd bound to
// that Node from a file.
func (l *Lab) addKubeNode(ns *NS) (*Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i := strings.LastIndex(ns.Name, "-n")
	n := &Node{NS: ns, Name: "node-" + ns.Name[i+2:], kubectl: l.Kubectl}
	n.Kubeconfig = filepath.Join(l.run.dir, n.Name+".kubeconfig")
	n.TokenFile = filepath.Join(l.run.dir, n.Name+".token")

	if err := l.createNode(ctx, n.Name, ns); err != nil {
		return nil, err
	}
	token, err := l.NodeToken(ctx, n.Name)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.TokenFile, []byte(token), 0o600); err != nil {
		return nil, fmt.Errorf("token for %s: %w", n.Name, err)
	}
	if err := writeKubeconfig(n.Kubeconfig, l.API, l.pki.caPEM, ServiceAccountName, &clientcmdapi.AuthInfo{TokenFile: n.TokenFile}); err != nil {
		return nil, err
	}
	return n, nil
}

// NodeToken returns a new token of l2lb-system/l2lbd bound to the Node
// object named node, what `kubectl create token --bound-object-kind Node`
// asks for; a day outlives any test.
func (l *Lab) NodeToken(ctx context.Context, node string) (string, error) {
	tr, err := l.Client.CoreV1().ServiceAccounts(ServiceAccountNamespace).CreateToken(ctx, ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr(int64(24 * 3600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: node},
		}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", node, err)
	}
	return tr.Status.Token, nil
}

// createNode creates the Node object name, Ready, with the namespace's
// addresses.
func (l *Lab) createNode(ctx context.Context, name string, ns *NS) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"},
	}}
	node, err := l.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", Message: "l2lb lab node",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ns.IPv4.String()},
			{Type: corev1.NodeInternalIP, Address: ns.IPv6.String()},
			{Type: corev1.NodeHostName, Address: name},
		},
	}
	if _, err := l.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// RecreateNode deletes the Node object of n and creates it again, Ready: a
// new object with a new UID, so every token bound to the old one is
// rejected from now on, as when a node is decommissioned and rejoins.
func (l *Lab) RecreateNode(n *Node) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil {
		l.t.Fatalf("lab: RecreateNode(%s): %v", n.Name, err)
	}
	err := poll(ctx, func() error {
		_, err := l.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	if err == nil {
		err = l.createNode(ctx, n.Name, n.NS)
	}
	if err != nil {
		l.t.Fatalf("lab: RecreateNode(%s): %v", n.Name, err)
	}
}

// SetNodeReady sets the Ready condition of Node name through the status
// subresource, as a kubelet (or its absence) would.
func (l *Lab) SetNodeReady(name string, ready bool) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	err := retryConflict(ctx, func() error {
		node, err := l.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		found := false
		for i, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				found = true
				if c.Status != status {
					node.Status.Conditions[i].LastTransitionTime = now
				}
				node.Status.Conditions[i].Status = status
				node.Status.Conditions[i].LastHeartbeatTime = now
			}
		}
		if !found {
			node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{
				Type: corev1.NodeReady, Status: status, LastHeartbeatTime: now, LastTransitionTime: now,
			})
		}
		_, err = l.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		l.t.Fatalf("lab: SetNodeReady(%s, %v): %v", name, ready, err)
	}
}

// retryConflict calls fn until it returns anything but a conflict.
func retryConflict(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !apierrors.IsConflict(err) {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
