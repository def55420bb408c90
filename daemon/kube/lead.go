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
//
// The IPAM lease is held four times as long as a member Lease (at least 2 s)
// and renewed
// once per member leaseDuration: a crashed leader only delays allocation of
// new Services (answering never depends on it), and the leader's extra write
// stays a fraction of the member renewals.
func Elect(ctx context.Context, client kubernetes.Interface, namespace, identity string, memberLease time.Duration, log *slog.Logger, lead func(context.Context)) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaFor(namespace, IPAMLease),
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	// client-go requires LeaseDuration > RenewDeadline > 1.2 × RetryPeriod,
	// and the Lease object whole seconds.
	duration := max(4*memberLease, 2*time.Second)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   duration,
		RenewDeadline:   duration * 2 / 3,
		RetryPeriod:     memberLease,
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
