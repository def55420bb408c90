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
	"github.com/l2lb/l2lb/daemon/kube"
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

	configChanged := make(chan struct{}, 1)
	prev := cfg // owned by the watcher's goroutine
	w := config.NewWatcher(opts.ConfigPath, cfg, data, config.WatchOptions{
		Logger:   log,
		Hostname: opts.Hostname,
		OnReload: func(r config.Reload) {
			if !r.Changed {
				return
			}
			level.Set(r.Config.Log.Level)
			warnRestartOnly(log, prev, r.Config)
			prev = r.Config
			select {
			case configChanged <- struct{}{}:
			default:
			}
		},
	})

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			log.Error("config watch stopped; SIGHUP still reloads", "err", err)
		}
	})
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

	client, err := kube.Connect(ctx, cfg.Kubeconfig, "l2lbd/"+opts.Version, log)
	if err != nil {
		wg.Wait()
		log.Info("l2lbd stopped", "connected", false)
		return nil // ctx done
	}
	view := kube.NewView(client)
	wg.Go(func() { view.Run(ctx) })
	recorder, stopRecorder := kube.NewRecorder(client, cfg.NodeName)
	defer stopRecorder()

	alloc := &allocator{client: client, view: view, config: w.Current, recorder: recorder, log: log}
	co := cfg.Coordination
	wg.Go(func() {
		err := kube.Elect(ctx, client, co.Namespace, cfg.NodeName, co.RenewInterval, co.LeaseDuration, log,
			func(ctx context.Context) { alloc.run(ctx, configChanged) })
		if err != nil {
			log.Error("IPAM leader election stopped", "err", err)
		}
	})

	<-ctx.Done()
	log.Info("l2lbd stopping")
	cancel()
	wg.Wait()
	log.Info("l2lbd stopped")
	return nil
}

// warnRestartOnly says which edited fields take effect only after a restart.
func warnRestartOnly(log *slog.Logger, old, cur *config.Config) {
	if old.NodeName != cur.NodeName || old.Kubeconfig != cur.Kubeconfig || old.Coordination != cur.Coordination {
		log.Warn("nodeName, kubeconfig and coordination take effect after a restart (systemctl restart l2lbd)")
	}
}
