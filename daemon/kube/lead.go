package kube

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// IPAMLease is the Lease whose holder is the one daemon that writes Service
// status and allocation Events.
const IPAMLease = "l2lbd-ipam"

// Elect campaigns for IPAMLease in namespace until ctx is done, running lead
// while this node holds it. lead's context ends when leadership is lost; on
// shutdown the lease is released so that a peer takes over at once.
func Elect(ctx context.Context, client kubernetes.Interface, namespace, identity string, renew, leaseDuration time.Duration, log *slog.Logger, lead func(context.Context)) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaFor(namespace, IPAMLease),
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	// client-go requires LeaseDuration > RenewDeadline > 1.2 × RetryPeriod;
	// config validation guarantees leaseDuration >= 2 × renew.
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   leaseDuration * 2 / 3,
		RetryPeriod:     renew,
		ReleaseOnCancel: true,
		Name:            IPAMLease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("became the IPAM leader")
				lead(ctx)
			},
			OnStoppedLeading: func() { log.Info("no longer the IPAM leader") },
			OnNewLeader: func(id string) {
				if id != identity {
					log.Info("IPAM leader is elsewhere", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	// Run returns when leadership is lost; campaign again until ctx is done.
	for ctx.Err() == nil {
		le.Run(ctx)
	}
	return nil
}
