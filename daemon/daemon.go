// Package daemon owns l2lbd's run loop: it loads and watches the configuration,
// and wires the Kubernetes view, the allocation and placement decisions and
// netio together.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/l2lb/l2lb/config"
)

// Options are what the command line hands the daemon.
type Options struct {
	ConfigPath string
	Hostname   string
	Version    string
	Stderr     io.Writer
	// Reload delivers reload requests (SIGHUP).
	Reload <-chan os.Signal
}

// Run runs the daemon until ctx is done. It returns an error only when it
// cannot start; once running, problems are logged and the daemon keeps going.
func Run(ctx context.Context, opts Options) error {
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(opts.Stderr, &slog.HandlerOptions{Level: level}))

	cfg, data, err := config.Load(opts.ConfigPath, opts.Hostname)
	if err != nil {
		for _, p := range config.Problems(err) {
			log.Error("config problem", "problem", p.Error())
		}
		return fmt.Errorf("cannot start without a valid config: %w", err)
	}
	level.Set(cfg.Log.Level)
	log.Info("l2lbd starting", "version", opts.Version, "config", opts.ConfigPath, "digest", cfg.Digest(),
		"node", cfg.NodeName, "pools", len(cfg.Pools), "class", cfg.LoadBalancerClass)

	w := config.NewWatcher(opts.ConfigPath, cfg, data, config.WatchOptions{
		Logger:   log,
		Hostname: opts.Hostname,
		OnReload: func(r config.Reload) {
			if r.Changed {
				level.Set(r.Config.Log.Level)
			}
		},
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-opts.Reload:
				log.Info("reload requested (SIGHUP)")
				w.Reload()
			}
		}
	})
	err = w.Run(ctx)
	log.Info("l2lbd stopped")
	return err
}
