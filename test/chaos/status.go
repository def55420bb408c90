package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/test/lab"
)

// statusWatch polls the Services' status: it records each Service's
// addresses when first complete, points the prober at every address held,
// and reports addresses that change or are given to two Services that do
// not share (invariant 3).
type statusWatch struct {
	l      *lab.Lab
	facts  *facts
	prober *lab.Prober
	report func(violation)
}

const statusPoll = 250 * time.Millisecond

func (w *statusWatch) run(ctx context.Context) {
	t := time.NewTicker(statusPoll)
	defer t.Stop()
	reported := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		list, err := w.l.Client.CoreV1().Services(namespace).List(reqCtx, metav1.ListOptions{})
		cancel()
		if err != nil {
			continue // the API server is down: nothing to learn
		}
		w.check(list.Items, reported)
	}
}

func (w *statusWatch) check(items []corev1.Service, reported map[string]bool) {
	now := time.Now()
	w.facts.mu.Lock()
	byName := map[string]*service{}
	for _, s := range w.facts.services {
		if s.live() {
			byName[s.name] = s
		}
	}
	holders := map[netip.Addr][]*service{}
	var vs []violation
	for i := range items {
		s := byName[items[i].Name]
		if s == nil {
			continue // deleted just now
		}
		ips := ipam.IngressIPs(&items[i])
		slices.SortFunc(ips, netip.Addr.Compare)
		switch {
		case s.assigned.IsZero() && len(ips) == s.families:
			s.ips, s.assigned = ips, now
		case !s.assigned.IsZero() && !slices.Equal(ips, s.ips) && !reported[s.name]:
			reported[s.name] = true
			vs = append(vs, violation{invariant: "3: stable addresses", at: now,
				what: fmt.Sprintf("Service %s's addresses changed from %v to %v, and no config edit removed them from the pools", s.name, s.ips, ips)})
		}
		for _, ip := range ips {
			holders[ip] = append(holders[ip], s)
		}
	}
	var watched []netip.Addr
	for ip, hs := range holders {
		watched = append(watched, ip)
		if len(hs) < 2 {
			continue
		}
		key := fmt.Sprint(ip, hs[0].name, hs[1].name)
		shared := hs[0].shareKey != "" && !slices.ContainsFunc(hs, func(s *service) bool { return s.shareKey != hs[0].shareKey })
		if !shared && !reported[key] {
			reported[key] = true
			vs = append(vs, violation{invariant: "3: one Service per address", at: now, ip: ip,
				what: fmt.Sprintf("%s is given to Services %s and %s, which do not share", ip, hs[0].name, hs[1].name)})
		}
	}
	w.facts.mu.Unlock()
	slices.SortFunc(watched, netip.Addr.Compare)
	w.prober.Watch(watched...)
	for _, v := range vs {
		w.report(v)
	}
}
