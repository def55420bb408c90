package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

// converge waits, at most bound after from, until the cluster has settled
// (invariant 4): every daemon runs, is ready and has a fresh view, and
// every address with an eligible node is claimed by exactly one node,
// eligible, whose MAC alone answers for it. It returns how long that took.
func (h *harness) converge(from time.Time, bound time.Duration) (time.Duration, error) {
	var problems []string
	for {
		problems = h.unsettled()
		if len(problems) == 0 {
			return time.Since(from), nil
		}
		if time.Since(from) > bound {
			return 0, fmt.Errorf("not converged %v after the last fault: %s", bound, strings.Join(problems, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// unsettled says what keeps the cluster from having converged.
func (h *harness) unsettled() []string {
	var problems []string
	for _, d := range h.daemons {
		if p := d.current(); p.Exited() {
			problems = append(problems, d.node.Name+": l2lbd not running")
			continue
		}
		if err := d.settled(); err != nil {
			problems = append(problems, d.node.Name+": "+err.Error())
		}
	}
	claims, err := h.claims()
	if err != nil {
		return append(problems, "member Leases: "+err.Error())
	}
	now := time.Now()
	h.facts.mu.Lock()
	elig := h.facts.eligibility(now)
	var held []netip.Addr
	for _, s := range h.facts.services {
		if s.live() && !s.assigned.IsZero() {
			held = append(held, s.ips...)
		}
	}
	eligible := map[netip.Addr]uint64{}
	for _, ip := range held {
		eligible[ip] = elig.at(ip, now)
	}
	h.facts.mu.Unlock()
	slices.SortFunc(held, netip.Addr.Compare)
	for _, ip := range slices.Compact(held) {
		if eligible[ip] == 0 {
			continue // nobody may answer: nothing to converge to
		}
		who := claims[ip]
		if len(who) != 1 {
			problems = append(problems, fmt.Sprintf("%s claimed by %v", ip, who))
			continue
		}
		n := slices.Index(h.facts.nodes, who[0])
		if n < 0 || eligible[ip]&(1<<n) == 0 {
			problems = append(problems, fmt.Sprintf("%s claimed by %s, which is not eligible", ip, who[0]))
			continue
		}
		if macs := recentMACs(h.prober.Log(ip), now.Add(-time.Second)); len(macs) != 1 || macs[0] != h.facts.macs[n] {
			problems = append(problems, fmt.Sprintf("%s claimed by %s but answered in the last second by %v", ip, who[0], h.namesOf(macs)))
		}
	}
	return problems
}

// settled checks the daemon's log since its latest start: ready, and its
// view last judged fresh.
func (d *daemon) settled() error {
	lines, err := readLog(d.log, d.index)
	if err != nil {
		return err
	}
	d.mu.Lock()
	since := d.starts[len(d.starts)-1]
	d.mu.Unlock()
	ready, health := false, ""
	for _, l := range lines {
		if l.at.Before(since) {
			continue
		}
		switch {
		case l.msg == "ready":
			ready = true
		case strings.HasPrefix(l.msg, "view of the cluster is"), strings.HasPrefix(l.msg, "this node did not run"):
			health = l.msg
		}
	}
	switch {
	case !ready:
		return errors.New("not ready")
	case !strings.HasPrefix(health, "view of the cluster is fresh"):
		return fmt.Errorf("view not fresh (last said: %q)", health)
	}
	return nil
}

// claims reads the member Leases: which nodes claim each address.
func (h *harness) claims() (map[netip.Addr][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := h.l.Client.CoordinationV1().Leases(config.Default().Coordination.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr][]string{}
	for i := range list.Items {
		node, m, ok := kube.ParseMember(&list.Items[i])
		if !ok {
			continue
		}
		for _, ip := range m.Claims {
			out[ip] = append(out[ip], node)
		}
	}
	return out, nil
}

// recentMACs lists the MACs that answered after since.
func recentMACs(log lab.ProbeLog, since time.Time) []string {
	var out []string
	for _, r := range log.Replies {
		if r.Last.After(since) && !slices.Contains(out, r.MAC) {
			out = append(out, r.MAC)
		}
	}
	slices.Sort(out)
	return out
}

func (h *harness) namesOf(macs []string) []string {
	var out []string
	for _, m := range macs {
		out = append(out, h.facts.nameOfMAC(m))
	}
	return out
}
