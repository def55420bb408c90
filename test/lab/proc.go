package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a background process started by the lab, killed at cleanup at the
// latest.
type Proc struct {
	PID int

	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // of cmd.Wait, set before done closes
}

// Start runs a command in the namespace in the background. It is killed
// (SIGTERM, then SIGKILL after 2 s) when t's test ends, and its output is
// logged if the test failed. A bare command name is looked up in PATH.
func (ns *NS) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	p, err := startProc(ns.run, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	if err != nil {
		t.Fatalf("lab: start %s in %s: %v", name, ns.Name, err)
	}
	t.Cleanup(func() {
		p.stop(2 * time.Second)
		if t.Failed() {
			t.Logf("lab: output of %s in %s (pid %d, %v):\n%s", name, ns.Name, p.PID, p.exitErr(), p.Output())
		}
	})
	return p
}

// startProc starts a process as leader of its own process group, killed by
// the kernel if the test process dies, recorded for lab-clean.
func startProc(r *run, name string, args ...string) (*Proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = cleanEnv()
	out := &tailBuffer{max: 4 << 20}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{PID: cmd.Process.Pid, name: strings.Join(append([]string{name}, args...), " "), cmd: cmd, out: out, done: make(chan struct{})}
	recordPID(r.dir, p.PID)
	r.addProc(p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error {
	if p.exited() {
		return fmt.Errorf("signal pid %d: process already exited", p.PID)
	}
	return p.cmd.Process.Signal(sig)
}

// Kill kills the process and everything it started (its process group) and
// waits for it to exit.
func (p *Proc) Kill() {
	if !p.exited() {
		syscall.Kill(-p.PID, syscall.SIGKILL)
	}
	<-p.done
}

// Wait waits at most timeout for the process to exit and returns how it
// exited: nil for status 0, an *exec.ExitError otherwise.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("pid %d still running after %v", p.PID, timeout)
	}
}

// Output returns what the process wrote to stdout and stderr so far (the
// last 4 MiB).
func (p *Proc) Output() string {
	return p.out.String()
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool { return p.exited() }

func (p *Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *Proc) exitErr() error {
	if !p.exited() {
		return errors.New("running")
	}
	if p.err == nil {
		return errors.New("exit status 0")
	}
	return p.err
}

// stop asks the process group to terminate, then kills it after grace.
func (p *Proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	syscall.Kill(-p.PID, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
