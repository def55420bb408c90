package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildL2lbd builds the daemon under test, from this checkout, into dir and
// returns the binary's path. Test packages call it from TestMain, once.
func BuildL2lbd(dir string) (string, error) {
	bin := filepath.Join(dir, "l2lbd")
	build := exec.Command("go", "build", "-o", bin, "github.com/l2lb/l2lb/cmd/l2lbd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building l2lbd: %w", err)
	}
	return bin, nil
}
