package lab

import (
	"context"
	"fmt"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kube-proxy's identity: its own ServiceAccount bound to the API server's
// built-in ClusterRole for it, as kubeadm sets it up; l2lbd's narrower RBAC
// stays what the other tests exercise.
const (
	kubeProxyAccount = "kube-proxy"
	// kubeProxyNamespace holds its ServiceAccount, as kubeadm sets it up.
	kubeProxyNamespace = "kube-system"
	kubeProxyRole      = "system:node-proxier"
)

// KubeProxy is kube-proxy KubeVersion running on a node.
type KubeProxy struct {
	Node *Node
	Proc *Proc
}

// StartKubeProxy runs a real kube-proxy (built by test/kubebin/build.sh) in
// nftables mode in every node's namespace, with a kubeconfig of its own per
// node, and waits until each reports healthy. Traffic from outside
// PodRange to a Service is masqueraded (detectLocalMode ClusterCIDR), so
// with externalTrafficPolicy Cluster a pod on another node answers through
// the node that received the request. Call AddPods first: kube-proxy
// forwards to the pods, and the nodes forward only once AddPods set them up.
func (l *Lab) StartKubeProxy(t testing.TB) []*KubeProxy {
	t.Helper()
	if err := requirements("nft"); err != nil {
		t.Fatalf("lab: kube-proxy: %v (apt-get install nftables)", err)
	}
	bin, err := kubeBinDir()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	bin = filepath.Join(bin, "kube-proxy")
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("lab: kube-proxy %s not found at %s; build it with `make deps` or test/kubebin/build.sh (a few minutes on 2 cores)", KubeVersion, bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.kubeProxyRBAC(ctx); err != nil {
		t.Fatalf("lab: kube-proxy RBAC: %v", err)
	}
	var kps []*KubeProxy
	for _, n := range l.Nodes {
		conf, err := l.kubeProxyConfig(ctx, n)
		if err != nil {
			t.Fatalf("lab: kube-proxy on %s: %v", n.Name, err)
		}
		kps = append(kps, &KubeProxy{Node: n, Proc: n.Start(t, bin, "--config", conf)})
	}
	for _, kp := range kps {
		// /healthz answers 200 once the rules are written.
		url := "http://" + kp.Node.IPv4.String() + ":10256/healthz"
		if err := waitHTTP(kp.Proc, url, nil, "", 60*time.Second); err != nil {
			t.Fatalf("lab: kube-proxy on %s: %v", kp.Node.Name, err)
		}
	}
	return kps
}

func (l *Lab) kubeProxyRBAC(ctx context.Context) error {
	_, err := l.Client.CoreV1().ServiceAccounts(kubeProxyNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: kubeProxyAccount}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = l.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lab:kube-proxy"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: kubeProxyRole},
		Subjects: []rbacv1.Subject{{
			Kind: rbacv1.ServiceAccountKind, Namespace: kubeProxyNamespace, Name: kubeProxyAccount,
		}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// kubeProxyConfig writes the node's kube-proxy kubeconfig and
// KubeProxyConfiguration and returns the latter's path.
func (l *Lab) kubeProxyConfig(ctx context.Context, n *Node) (string, error) {
	tr, err := l.Client.CoreV1().ServiceAccounts(kubeProxyNamespace).CreateToken(ctx, kubeProxyAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(24 * 3600))}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	kubeconfig := filepath.Join(l.run.dir, n.Name+".kube-proxy.kubeconfig")
	if err := writeKubeconfig(kubeconfig, l.API, l.pki.caPEM, kubeProxyAccount, &clientcmdapi.AuthInfo{Token: tr.Status.Token}); err != nil {
		return "", err
	}
	// conntrack maxPerCore 0 and oomScoreAdj 0: leave the machine's
	// conntrack table size and the OOM killer's choices alone.
	conf := strings.Join([]string{
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1",
		"kind: KubeProxyConfiguration",
		"mode: nftables",
		"hostnameOverride: " + n.Name,
		"clientConnection: {kubeconfig: " + kubeconfig + "}",
		"clusterCIDR: " + PodRange.String(),
		"detectLocalMode: ClusterCIDR",
		"conntrack: {maxPerCore: 0, min: 0}",
		"oomScoreAdj: 0",
		"healthzBindAddress: " + n.IPv4.String() + ":10256",
		"metricsBindAddress: 127.0.0.1:10249",
		"",
	}, "\n")
	path := filepath.Join(l.run.dir, n.Name+".kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", err
	}
	return path, nil
}
