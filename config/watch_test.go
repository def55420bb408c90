package config

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// poolConf is a valid file whose nodeName tells the versions apart.
func poolConf(version int) []byte {
	return fmt.Appendf(nil, "nodeName: v%d\npools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n", version)
}

// watchFixture runs a Watcher on a file in a temporary directory and collects
// the outcomes of its reloads.
type watchFixture struct {
	dir, path string
	w         *Watcher
	reloads   chan Reload
}

func startWatcher(t *testing.T, path string, data []byte) *watchFixture {
	t.Helper()
	c, loaded, err := Load(path, "host")
	if err != nil {
		t.Fatal(err)
	}
	if string(loaded) != string(data) {
		t.Fatalf("loaded %q, wrote %q", loaded, data)
	}
	f := &watchFixture{dir: filepath.Dir(path), path: path, reloads: make(chan Reload, 100)}
	f.w = NewWatcher(path, c, loaded, WatchOptions{
		Hostname: "host",
		Debounce: 20 * time.Millisecond,
		OnReload: func(r Reload) { f.reloads <- r },
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	// fsnotify's watch is in place once Run has added it; a reload request
	// round-trips through Run's loop, which proves that.
	f.w.Reload()
	f.next(t)
	return f
}

// next waits (bounded) for the next reload outcome.
func (f *watchFixture) next(t *testing.T) Reload {
	t.Helper()
	select {
	case r := <-f.reloads:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no reload within 5s")
		return Reload{}
	}
}

// quiet checks that no reload happens for a while.
func (f *watchFixture) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-f.reloads:
		t.Fatalf("unexpected reload: changed=%v err=%v", r.Changed, r.Err)
	case <-time.After(d):
	}
}

func (f *watchFixture) wantNode(t *testing.T, r Reload, node string) {
	t.Helper()
	if r.Err != nil || !r.Changed {
		t.Fatalf("want a good reload, got changed=%v err=%v", r.Changed, r.Err)
	}
	if got := f.w.Current().NodeName; got != node || r.Config.NodeName != node {
		t.Fatalf("config in force has nodeName %q (reported %q), want %q", got, r.Config.NodeName, node)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The four ways files get edited, each bringing the new value in.
func TestWatchEdits(t *testing.T) {
	edits := []struct {
		name string
		edit func(t *testing.T, f *watchFixture, data []byte)
	}{
		{"rename over (editors)", func(t *testing.T, f *watchFixture, data []byte) {
			tmp := filepath.Join(f.dir, ".l2lbd.yaml.swp")
			writeFile(t, tmp, data)
			if err := os.Rename(tmp, f.path); err != nil {
				t.Fatal(err)
			}
		}},
		{"sed -i", func(t *testing.T, f *watchFixture, data []byte) {
			cur, _ := os.ReadFile(f.path)
			from := string(cur[:len("nodeName: vN")])
			to := string(data[:len("nodeName: vN")])
			out, err := exec.Command("sed", "-i", "s/"+from+"/"+to+"/", f.path).CombinedOutput()
			if err != nil {
				t.Fatalf("sed: %v: %s", err, out)
			}
		}},
		{"truncate and write", func(t *testing.T, f *watchFixture, data []byte) {
			fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(data); i += 16 { // in pieces, as a slow writer would
				if _, err := fh.Write(data[i:min(i+16, len(data))]); err != nil {
					t.Fatal(err)
				}
			}
			fh.Close()
		}},
	}
	for _, tc := range edits {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l2lbd.yaml")
			writeFile(t, path, poolConf(1))
			f := startWatcher(t, path, poolConf(1))
			for v := 2; v <= 4; v++ {
				tc.edit(t, f, poolConf(v))
				f.wantNode(t, f.next(t), fmt.Sprintf("v%d", v))
			}
		})
	}
}

// A ConfigMap mounted as a volume: the file is a symlink through ..data, which
// the kubelet swaps atomically to a new timestamped directory.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	publish := func(v int) {
		ts := filepath.Join(dir, fmt.Sprintf("..2026_11_21_%d", v))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(ts, "l2lbd.yaml"), poolConf(v))
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(1)
	path := filepath.Join(dir, "l2lbd.yaml")
	if err := os.Symlink("..data/l2lbd.yaml", path); err != nil {
		t.Fatal(err)
	}
	f := startWatcher(t, path, poolConf(1))
	for v := 2; v <= 4; v++ {
		publish(v)
		f.wantNode(t, f.next(t), fmt.Sprintf("v%d", v))
	}
}

// Garbage, half-written and invalid files leave the last good config in force.
func TestWatchKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l2lbd.yaml")
	writeFile(t, path, poolConf(1))
	f := startWatcher(t, path, poolConf(1))

	bad := [][]byte{
		[]byte("\x00\xff garbage {{{"),
		[]byte("pools:\n\t- name: lan\n"),
		[]byte("nodeName: v9\npools:\n  - name: lan\n    addresses: [198.51.100.0/33]\n"),
		nil, // emptied
	}
	for _, data := range bad {
		writeFile(t, path, data)
		r := f.next(t)
		if r.Err == nil || r.Changed {
			t.Fatalf("%q: want a refused reload, got changed=%v err=%v", data, r.Changed, r.Err)
		}
		if got := f.w.Current().NodeName; got != "v1" || r.Config.NodeName != "v1" {
			t.Fatalf("%q: config in force changed to %q", data, got)
		}
	}

	// The file removed: still the last good one.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := f.next(t); r.Err == nil || f.w.Current().NodeName != "v1" {
		t.Fatalf("removal: want refused reload keeping v1, got err=%v node=%s", r.Err, f.w.Current().NodeName)
	}
	writeFile(t, path, poolConf(2))
	f.wantNode(t, f.next(t), "v2")
}

// Editor noise in the directory and touches that change nothing reload nothing;
// a reload request re-reads even an unchanged file.
func TestWatchIgnoresNoise(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l2lbd.yaml")
	writeFile(t, path, poolConf(1))
	f := startWatcher(t, path, poolConf(1))
	for _, name := range []string{".l2lbd.yaml.swp", "l2lbd.yaml~", "4913", "#l2lbd.yaml#", "other.yaml"} {
		writeFile(t, filepath.Join(f.dir, name), []byte("garbage"))
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, poolConf(1)) // same content rewritten
	f.quiet(t, 300*time.Millisecond)

	f.w.Reload()
	if r := f.next(t); !r.Requested || r.Changed || r.Err != nil {
		t.Fatalf("requested reload of unchanged file: got %+v", r)
	}
}
