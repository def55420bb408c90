package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce lets an editor finish a save (write, rename, chmod) before
// the file is read.
const DefaultDebounce = 50 * time.Millisecond

// Reload is the outcome of one reload attempt.
type Reload struct {
	// Config is the configuration in force after the attempt: the new one, or
	// the previous one when the attempt was refused.
	Config *Config
	// Err says why the attempt was refused; it joins one *Problem per fault.
	Err error
	// Changed reports whether a new configuration was swapped in.
	Changed bool
	// Data is the new configuration's file content when Changed.
	Data []byte
	// Requested is true for reloads asked for with Watcher.Reload (SIGHUP)
	// rather than noticed on disk.
	Requested bool
}

// WatchOptions configures a Watcher.
type WatchOptions struct {
	Logger   *slog.Logger
	Hostname string        // NodeName's default, as given to Parse
	Debounce time.Duration // 0 means DefaultDebounce
	// OnReload, if set, is called from Run's goroutine after every attempt.
	OnReload func(Reload)
	// Refused: the file was refused at start and the configuration in
	// force is the last good copy (LoadAtStart), so the file's next read
	// is reported even if it did not change: putting the copy's content
	// back says "unchanged from the one in force", and clears the refusal.
	Refused bool
}

// Watcher keeps the configuration file's last good content in force: it
// reloads when the file changes on disk (in place, by rename, by a ConfigMap's
// ..data symlink swap) or when asked to, one reload at a time.
type Watcher struct {
	path    string
	opts    WatchOptions
	current atomic.Pointer[Config]
	// Owned by Run's goroutine: the content in force, and the content of the
	// last attempt, so that one bad save is reported once.
	lastData, lastSeen []byte
	requests           chan struct{}
}

// NewWatcher returns a watcher for path whose configuration in force starts as
// initial, parsed from data. It starts nothing.
func NewWatcher(path string, initial *Config, data []byte, opts WatchOptions) *Watcher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	w := &Watcher{path: path, opts: opts, lastData: data, lastSeen: data, requests: make(chan struct{}, 1)}
	if opts.Refused {
		w.lastSeen = nil
	}
	w.current.Store(initial)
	return w
}

// Current returns the configuration in force.
func (w *Watcher) Current() *Config { return w.current.Load() }

// Reload asks Run to re-read the file even if it seems unchanged, as SIGHUP
// does. Requests made while one is pending coalesce.
func (w *Watcher) Reload() {
	select {
	case w.requests <- struct{}{}:
	default:
	}
}

// Run watches until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer fw.Close()
	// The directory, not the file: editors and ConfigMaps replace the file,
	// which would silently end a watch on the file itself.
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch config directory %s: %w", dir, err)
	}

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch config: fsnotify closed its event channel")
			}
			if w.relevant(ev.Name) {
				debounce.Reset(w.opts.Debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch config: fsnotify closed its error channel")
			}
			w.opts.Logger.Warn("config watch error; edits may be noticed late, SIGHUP reloads", "err", err)
		case <-debounce.C:
			w.reload(false)
		case <-w.requests:
			w.reload(true)
		}
	}
}

// relevant reports whether an event on name may have changed the file. Only
// the file's own name counts, so editor noise (swap, backup and temporary
// files) is ignored; names starting with ".." are a ConfigMap's atomic swap.
func (w *Watcher) relevant(name string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(w.path) || strings.HasPrefix(base, "..")
}

func (w *Watcher) reload(requested bool) {
	log := w.opts.Logger
	prev := w.current.Load()
	c, data, err := Load(w.path, w.opts.Hostname)
	if !requested && data != nil && bytes.Equal(data, w.lastSeen) {
		return // touched, or rewritten with the content last tried
	}
	w.lastSeen = data
	r := Reload{Config: prev, Requested: requested}
	switch {
	case err != nil:
		r.Err = err
		n := LogProblems(log, err)
		log.Error("config reload refused; keeping the last good config", "path", w.path, "problems", n, "digest", prev.Digest())
	case bytes.Equal(data, w.lastData):
		log.Info("config unchanged from the one in force", "path", w.path, "digest", prev.Digest())
	default:
		w.lastData = data
		w.current.Store(c)
		r.Config, r.Changed, r.Data = c, true, data
		log.Info("config reloaded", "path", w.path, "digest", c.Digest(), "pools", len(c.Pools))
	}
	if w.opts.OnReload != nil {
		w.opts.OnReload(r)
	}
}
