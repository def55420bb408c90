package daemon

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/kube"
)

// formerNamespaceCheck is how often a node looks for peers that still keep
// their member Leases in the namespace of older versions.
const formerNamespaceCheck = time.Minute

// watchFormerNamespace says, loudly and until it ends, when live nodes keep
// their member Leases in kube-system while this one coordinates elsewhere:
// the two groups do not see each other's claims and may answer one address
// from two nodes (a rolling upgrade from a version whose default was
// kube-system, with configs that do not name the namespace). The fix is
// the operator's: one namespace on every node (README, Upgrade).
func watchFormerNamespace(ctx context.Context, client *kube.Client, node string, co config.Coordination, log *slog.Logger) {
	if co.Namespace == kube.FormerNamespace {
		return
	}
	// Renewals are stamped by the writers' clocks: allow for skew.
	maxAge := co.LeaseDuration + 30*time.Second
	var reported []string
	t := time.NewTicker(formerNamespaceCheck)
	defer t.Stop()
	for {
		peers, err := kube.PeersElsewhere(ctx, client, kube.FormerNamespace, node, maxAge, time.Now())
		switch {
		case err != nil:
			log.Debug("cannot look for peers in the former coordination namespace", "namespace", kube.FormerNamespace, "err", err)
		case len(peers) > 0 && !slices.Equal(peers, reported):
			log.Error("live nodes keep their member Leases in another namespace: they do not see this node's claims, nor it theirs, and may answer the same address; set coordination.namespace to one value on every node",
				"namespace", co.Namespace, "other_namespace", kube.FormerNamespace, "nodes", peers)
			reported = peers
		case len(peers) == 0 && reported != nil:
			log.Info("no live node keeps its member Lease in another namespace any more", "other_namespace", kube.FormerNamespace)
			reported = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
