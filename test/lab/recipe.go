package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KubeconfigRecipe runs the first shell block of examples/kubeconfig.md as
// an operator would, with the lab's admin kubeconfig and kubectl, in dir,
// and returns the path of the kubeconfig it made for the daemon.
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
