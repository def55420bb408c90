package kube

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestTokenFileRotation: with a kubeconfig that names a tokenFile, the
// client the daemon builds reads a rewritten token without being rebuilt:
// at the first request after a 401, not only when its copy is 50 s old (all
// that client-go's own tokenFile support does), so the daemon's next renewal
// after an expired token is replaced succeeds.
func TestTokenFileRotation(t *testing.T) {
	var valid atomic.Value
	valid.Store("old")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+valid.Load().(string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"major":"1","minor":"35","gitVersion":"v1.35.4"}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: srv.URL, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {TokenFile: token}},
		Contexts:       map[string]*clientcmdapi.Context{"c": {Cluster: "c", AuthInfo: "u"}},
		CurrentContext: "c",
	}
	if err := clientcmd.WriteToFile(cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	client, err := ConnectOnce(ctx, kubeconfig, "test")
	if err != nil {
		t.Fatalf("connect with the old token: %v", err)
	}
	version := func() error { return client.Core.Get().AbsPath("/version").Do(ctx).Error() }

	// The old token expires and a new one is written to the file.
	valid.Store("new")
	if err := os.WriteFile(token, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = version()
	if err != nil && CredentialProblem(err) == "" {
		t.Fatalf("request with the cached old token: %v, want a 401 explained as a credential problem", err)
	}
	if err := version(); err != nil {
		t.Errorf("request after the 401: %v, want the new token read from the file", err)
	}

	// A token the server rejects, written in place of a good one, is
	// explained in words.
	valid.Store("newer")
	if err := version(); err == nil || CredentialProblem(err) == "" {
		t.Errorf("request with a rejected token: %v, want a 401 explained as a credential problem", err)
	}
}
