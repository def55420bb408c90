package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildL2lbd builds the daemon under test, from this checkout, into dir and
// returns the binary's path.
func buildL2lbd(dir string) (string, error) {
	bin := filepath.Join(dir, "l2lbd")
	build := exec.Command("go", "build", "-o", bin, "github.com/l2lb/l2lb/cmd/l2lbd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building l2lbd: %w", err)
	}
	return bin, nil
}

// MainWithL2lbd is the TestMain of a package whose tests run the daemon:
// it builds l2lbd once into a temporary directory, sets *bin to its path,
// runs the tests, removes the directory and exits.
func MainWithL2lbd(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "l2lb-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = buildL2lbd(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
