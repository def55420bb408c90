package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadAtStart: a good file is used (and the caller saves it); a broken
// one gives way to the last good copy with the file's problem kept; with no
// copy, or a copy that no longer parses, the file's error stands.
func TestLoadAtStart(t *testing.T) {
	const good = "pools:\n  - name: lab\n    addresses: [198.51.100.10-198.51.100.20]\n"
	const other = "pools:\n  - name: lab\n    addresses: [198.51.100.30-198.51.100.40]\n"
	const broken = "pools:\n  - name: lab\n    addresses: [198.51.100.300]\n"
	cases := []struct {
		name        string
		file, saved string // "" for no file
		stateDir    bool
		want        string // the content in force; "" for none
		wantRefused bool
		wantErr     bool
		wantCopyErr bool // the error names the copy's problem too
	}{
		{name: "good file, no copy", file: good, stateDir: true, want: good},
		{name: "good file wins over the copy", file: good, saved: other, stateDir: true, want: good},
		{name: "broken file, the copy serves", file: broken, saved: good, stateDir: true, want: good, wantRefused: true},
		{name: "missing file, the copy serves", saved: good, stateDir: true, want: good, wantRefused: true},
		{name: "broken file, no copy", file: broken, stateDir: true, wantErr: true},
		{name: "broken file, a copy that no longer parses", file: broken, saved: broken, stateDir: true, wantErr: true, wantCopyErr: true},
		{name: "broken file, no state directory", file: broken, saved: good, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			etc, state := t.TempDir(), t.TempDir()
			path := filepath.Join(etc, "l2lbd.yaml")
			if tc.file != "" {
				writeFile(t, path, []byte(tc.file))
			}
			if tc.saved != "" {
				if err := SaveLastGood(state, []byte(tc.saved)); err != nil {
					t.Fatal(err)
				}
			}
			dir := ""
			if tc.stateDir {
				dir = state
			}
			c, data, refused, err := LoadAtStart(path, dir, "node-a")
			if (err != nil) != tc.wantErr || (refused != nil) != tc.wantRefused {
				t.Fatalf("err %v, refused %v; want err %v, refused %v", err, refused, tc.wantErr, tc.wantRefused)
			}
			if string(data) != tc.want || (c != nil) != (tc.want != "") {
				t.Fatalf("in force %q (config %v), want %q", data, c != nil, tc.want)
			}
			if got := err != nil && strings.Contains(err.Error(), LastGoodPath(state)+":3:17"); got != tc.wantCopyErr {
				t.Errorf("error %v names the copy's problem: %v, want %v", err, got, tc.wantCopyErr)
			}
			if tc.file == broken && (tc.wantErr || tc.wantRefused) {
				problem := err
				if refused != nil {
					problem = refused
				}
				if !strings.Contains(problem.Error(), path+":3:17: pools[0].addresses[0]") {
					t.Errorf("the file's problem %q does not name it, the field and its position", problem)
				}
			}
		})
	}
}

// TestSaveLastGood: the copy is replaced whole, and only when it changes.
func TestSaveLastGood(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"nodeName: a\n", "nodeName: b\n", "nodeName: b\n"} {
		if err := SaveLastGood(dir, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(LastGoodPath(dir))
		if err != nil || string(got) != content {
			t.Fatalf("copy %q (%v), want %q", got, err, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state directory holds %d files, want the copy alone", len(entries))
	}
	if err := SaveLastGood(filepath.Join(dir, "missing"), []byte("x")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("saving into a missing directory: %v, want a not-exist error", err)
	}
}

// TestWatchAfterRefusedStart: a daemon started on the last good copy hears
// about the file's next save even when it puts the copy's very content
// back (the refusal then clears), and about a different good file.
func TestWatchAfterRefusedStart(t *testing.T) {
	etc, state := t.TempDir(), t.TempDir()
	path := filepath.Join(etc, "l2lbd.yaml")
	writeFile(t, path, []byte("garbage: [\n"))
	if err := SaveLastGood(state, poolConf(1)); err != nil {
		t.Fatal(err)
	}
	c, data, refused, err := LoadAtStart(path, state, "host")
	if err != nil || refused == nil {
		t.Fatalf("LoadAtStart: err %v, refused %v; want the copy, refused", err, refused)
	}
	reloads := make(chan Reload, 10)
	w := NewWatcher(path, c, data, WatchOptions{Hostname: "host", Debounce: 20 * time.Millisecond, Refused: true,
		OnReload: func(r Reload) { reloads <- r }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	next := func() Reload {
		t.Helper()
		select {
		case r := <-reloads:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no reload within 5s")
			return Reload{}
		}
	}
	// Put the copy's content back, again until the watch (set up by Run
	// meanwhile) sees it: no reload is requested before, as none is at a
	// daemon's start.
	var r Reload
	for i := 0; ; i++ {
		writeFile(t, path, poolConf(1))
		select {
		case r = <-reloads:
		case <-time.After(100 * time.Millisecond):
			if i == 50 {
				t.Fatal("putting the copy's content back was not noticed within 5s")
			}
			continue
		}
		break
	}
	if r.Err != nil || r.Changed {
		t.Fatalf("the copy's content put back: changed=%v err=%v, want unchanged and no error", r.Changed, r.Err)
	}
	writeFile(t, path, poolConf(2))
	if r := next(); r.Err != nil || !r.Changed || string(r.Data) != string(poolConf(2)) {
		t.Fatalf("a new good file: changed=%v err=%v data=%q", r.Changed, r.Err, r.Data)
	}
}
