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
	"time"

	"k8s.io/klog/v2"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/daemon/logging"
	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/netio"
)

// Options are what the command line hands the daemon.
type Options struct {
	ConfigPath string
	Hostname   string
	Version    string
	Stderr     io.Writer
	// Reload delivers reload requests (SIGHUP).
	Reload <-chan os.Signal
	// StateDir keeps the last good copy of the config, which a start with a
	// broken file runs on; "" keeps none.
	StateDir string
}

// Run runs the daemon until ctx is done. It returns an error only when it
// cannot start; once running, problems are logged and the daemon keeps going.
func Run(ctx context.Context, opts Options) error {
	level := new(slog.LevelVar)
	log := slog.New(logging.NewHandler(opts.Stderr, level))
	klog.SetSlogLogger(log) // client-go's own messages, in the same format

	cfg, data, refused, err := config.LoadAtStart(opts.ConfigPath, opts.StateDir, opts.Hostname)
	if err != nil {
		config.LogProblems(log, err)
		return fmt.Errorf("cannot start without a valid config: %w", err)
	}
	level.Set(cfg.Log.Level)
	log.Info("l2lbd starting", "version", opts.Version, "config", opts.ConfigPath, "digest", cfg.Digest(),
		"node", cfg.NodeName, "pools", len(cfg.Pools), "class", cfg.LoadBalancerClass)
	if refused != nil {
		config.LogProblems(log, refused)
		log.Error("config refused at start; running the last good config", "path", opts.ConfigPath,
			"last_good", config.LastGoodPath(opts.StateDir), "digest", cfg.Digest())
	} else {
		saveLastGood(log, opts.StateDir, data)
	}
	warnNoPools(log, opts.ConfigPath, cfg)

	life := newLifecycle(log, cfg)
	if refused != nil {
		life.startedOnLastGood(cfg, refused)
	}
	// A good reload wakes both deciders; each has its own channel, as a
	// signal taken by one would be lost to the other.
	placeChanged, allocChanged := make(chan struct{}, 1), make(chan struct{}, 1)
	prev := cfg // owned by the watcher's goroutine
	w := config.NewWatcher(opts.ConfigPath, cfg, data, config.WatchOptions{
		Logger:   log,
		Hostname: opts.Hostname,
		Refused:  refused != nil,
		OnReload: func(r config.Reload) {
			life.reloaded(r)
			if !r.Changed {
				return
			}
			saveLastGood(log, opts.StateDir, r.Data)
			level.Set(r.Config.Log.Level)
			warnRestartOnly(log, prev, r.Config)
			warnNoPools(log, opts.ConfigPath, r.Config)
			prev = r.Config
			for _, c := range []chan struct{}{placeChanged, allocChanged} {
				select {
				case c <- struct{}{}:
				default:
				}
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
				life.reloading()
				w.Reload()
			}
		}
	})

	co := cfg.Coordination
	wg.Go(func() { life.watchdog(ctx, 3*co.RenewInterval+2*time.Second) })

	connecting, connected := context.WithCancel(ctx)
	wg.Go(func() { life.connecting(connecting) })
	countAPIErrors()
	client, err := kube.Connect(ctx, cfg.Kubeconfig, "l2lbd/"+opts.Version, cfg.Kubernetes.QPS, cfg.Kubernetes.Burst, cfg.Coordination.RenewInterval, log)
	connected()
	if err != nil {
		wg.Wait()
		log.Info("l2lbd stopped", "connected", false)
		return nil // ctx done
	}
	view := kube.NewView(client, cfg.Coordination.Namespace)
	wg.Go(func() { view.Run(ctx) })
	recorder := kube.NewRecorder(client, cfg.NodeName, log)
	wg.Go(func() { recorder.Run(ctx) })
	wg.Go(func() { watchFormerNamespace(ctx, client, cfg.NodeName, cfg.Coordination, log) })

	// Allocation: the IPAM leader, placed like an address, writes Service
	// status.
	alloc := &allocator{client: client, view: view, changes: view.Notify(kube.KindServices), config: w.Current, recorder: recorder, log: log}
	role := newIPAMRole(ctx, alloc, allocChanged, life.setLeader)

	// Placement: every node decides which addresses it answers for, and
	// which node leads IPAM. The decisions use the coordination timings the
	// heartbeat runs with: both are restart-only.
	placer := newPlacer(placer{
		node: cfg.NodeName, version: opts.Version, config: w.Current, view: view,
		changes:  view.Subscribe(kube.KindServices | kube.KindNodes | kube.KindLeases),
		recorder: recorder, log: log, decided: life.decided, lead: role.set,
		core: placement.NewCore(cfg.NodeName, placement.Timings{Renew: co.RenewInterval, Lease: co.LeaseDuration}),
	})
	placer.heartbeat = kube.NewHeartbeat(client, co.Namespace, cfg.NodeName, co.RenewInterval, co.LeaseDuration,
		kube.HeartbeatHooks{Written: placer.onWrite, Unsent: placer.onUnsent, Failed: placer.onFailed}, log)
	heartbeat := placer.heartbeat
	announcer := netio.New(netio.Options{
		Logger:           log,
		AnnounceCount:    cfg.Announce.Count,
		AnnounceInterval: cfg.Announce.Interval,
		AnnounceRefresh:  cfg.Announce.Refresh,
		OnConflict:       placer.onConflict,
		OnLinks:          placer.onLinks,
	})
	placer.netio = announcer
	if addr := cfg.Metrics.Address; addr != "" {
		m := &metrics{node: cfg.NodeName, version: opts.Version, life: life, stats: announcer.Stats, apiErrors: apiErrs,
			config: w.Current, use: alloc.use.Load, placing: placer.stats}
		wg.Go(func() { serveMetrics(ctx, addr, m, log) })
	}

	// The data plane and the heartbeat outlive ctx: on shutdown the daemon
	// stops answering, stops renewing, deletes its Lease so that peers take
	// over at once (or keeps it when no peer could, so that a restart
	// resumes at once), and only then closes its sockets.
	announcerCtx, stopAnnouncer := context.WithCancel(context.Background())
	defer stopAnnouncer()
	heartbeatCtx, stopHeartbeat := context.WithCancel(context.Background())
	defer stopHeartbeat()
	var announcing, beating, placing sync.WaitGroup
	announcing.Go(func() {
		if err := announcer.Run(announcerCtx); err != nil {
			log.Error("ARP/NDP responder stopped", "err", err)
		}
	})
	beating.Go(func() { heartbeat.Run(heartbeatCtx) })
	placing.Go(func() { placer.run(ctx, placeChanged) })

	<-ctx.Done()
	// The last write of the claims and the Lease's deletion share one
	// budget, so that a stop with the API server down or slow ends within
	// a lease duration or two, not one timeout after another.
	stopBy := time.Now().Add(co.LeaseDuration)
	life.stopping()
	log.Info("l2lbd stopping")
	placing.Wait()            // no decision may follow this one
	announcer.SetDesired(nil) // stop answering: the packet path sees it at once
	role.wait()               // no status write once a peer may lead
	release := placer.peerCanTakeOver()
	heartbeat.Finish(stopBy, release)
	stopHeartbeat()
	beating.Wait() // no renewal may re-create the Lease after this
	if release {
		releaseCtx, cancelRelease := context.WithDeadline(context.Background(), stopBy)
		if err := heartbeat.Release(releaseCtx); err != nil {
			log.Warn("cannot delete the member Lease; peers take over when it expires", kube.ErrAttrs(err)...)
		}
		cancelRelease()
	} else {
		log.Info("keeping the member Lease: no live peer could take over, and a restart resumes answering at once")
	}
	stopAnnouncer()
	announcing.Wait()
	wg.Wait()
	log.Info("l2lbd stopped")
	return nil
}

// warnNoPools says that a config without pools serves nothing, and how to
// change that: the daemon runs anyway, so an install ends active.
func warnNoPools(log *slog.Logger, path string, cfg *config.Config) {
	if len(cfg.Pools) == 0 {
		log.Warn("no pools configured: serving no address; declare pools, then systemctl reload l2lbd", "config", path)
	}
}

// warnRestartOnly says which edited fields take effect only after a restart.
func warnRestartOnly(log *slog.Logger, old, cur *config.Config) {
	if old.NodeName != cur.NodeName || old.Kubeconfig != cur.Kubeconfig || old.Kubernetes != cur.Kubernetes ||
		old.Coordination != cur.Coordination || old.Announce != cur.Announce || old.Metrics != cur.Metrics {
		log.Warn("nodeName, kubeconfig, kubernetes, coordination, announce and metrics take effect after a restart (systemctl restart l2lbd)")
	}
}

// NoCopyLog is logged when the daemon cannot keep a copy of a config it
// accepted (its state directory is missing or not writable).
const NoCopyLog = "cannot keep a copy of the config; a start with a broken file will fail"

// saveLastGood keeps data, a config just accepted, for a start with a
// broken file. Failing to is no reason to stop serving.
func saveLastGood(log *slog.Logger, dir string, data []byte) {
	if dir == "" {
		return
	}
	if err := config.SaveLastGood(dir, data); err != nil {
		log.Warn(NoCopyLog, "err", err)
	}
}
