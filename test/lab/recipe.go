package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
)

// KubeconfigRecipe runs the first shell block of examples/kubeconfig.md as
// an operator would, with the lab's admin kubeconfig and kubectl, in dir,
// and returns the path of the kubeconfig it made for the daemon. That
// kubeconfig reads its token from RecipeTokenPath; the recipe leaves one
// token per Node in dir (RecipeToken).
func (l *Lab) KubeconfigRecipe(ctx context.Context, dir string) (string, error) {
	doc, err := repoFile("examples/kubeconfig.md")
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(doc)
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(data), "```sh\n")
	script, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !strings.Contains(script, "create token") {
		return "", fmt.Errorf("no ```sh block with the recipe in %s", doc)
	}
	examples, _ := repoFile("examples")
	if err := os.Symlink(examples, filepath.Join(dir, "examples")); err != nil {
		return "", err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "KUBECONFIG="+l.AdminKubeconfig, "PATH="+filepath.Dir(l.Kubectl)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("kubeconfig recipe: %w\n%s", err, out)
	}
	return filepath.Join(dir, "l2lbd.kubeconfig"), nil
}

// RecipeTokenPath is where the recipe's kubeconfig reads its token: on a
// booted machine, install the node's RecipeToken there.
const RecipeTokenPath = "/etc/l2lb/token"

// RecipeToken is the token file the recipe made for node next to kubeconfig.
func RecipeToken(kubeconfig, node string) string {
	return filepath.Join(filepath.Dir(kubeconfig), "l2lbd-"+node+".token")
}

// RecipeKubeconfigFor writes a copy of the recipe's kubeconfig that reads
// node's token where the recipe left it, for a node namespace of this
// machine, which shares the host's /etc; it returns the copy's path.
func RecipeKubeconfigFor(kubeconfig, node string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("recipe kubeconfig: %w", err)
	}
	for _, a := range cfg.AuthInfos {
		if a.TokenFile != RecipeTokenPath {
			return "", fmt.Errorf("recipe kubeconfig: tokenFile %q, want %s", a.TokenFile, RecipeTokenPath)
		}
		a.TokenFile = RecipeToken(kubeconfig, node)
	}
	out := strings.TrimSuffix(kubeconfig, ".kubeconfig") + "-" + node + ".kubeconfig"
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		return "", fmt.Errorf("recipe kubeconfig: %w", err)
	}
	return out, nil
}
