package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// namespace holds the run's Services.
const namespace = "chaos"

// shareAnnotation lets Services with the same key share an address.
const shareAnnotation = "l2lb.dev/allow-shared-ip"

// svcKind is one shape of Service in the mix.
type svcKind int

const (
	clusterV4 svcKind = iota
	clusterV6
	clusterDual
	localV4
	localDual
	sharedPair // two Cluster Services sharing one IPv4 address
	svcKinds
)

var svcKindNames = [...]string{"Cluster IPv4", "Cluster IPv6", "Cluster dual-stack", "Local IPv4", "Local dual-stack", "shared IPv4"}

func (k svcKind) String() string { return svcKindNames[k] }

// svcState is a Service's traffic policy and the nodes with a ready
// endpoint of it, from a moment on.
type svcState struct {
	at        time.Time
	local     bool
	endpoints []int // node indices
}

// service is the harness's record of one Service it created. The fields
// after name change under facts.mu.
type service struct {
	name     string
	kind     svcKind
	shareKey string
	families int // addresses it gets: 1, or 2 when dual-stack

	states   []svcState
	ips      []netip.Addr // from its status, as first seen complete
	assigned time.Time    // when the client first saw ips
	deleted  time.Time
}

// holdsAt reports whether the Service held its addresses at t.
func (s *service) holdsAt(t time.Time) bool {
	return !s.assigned.IsZero() && !t.Before(s.assigned) && (s.deleted.IsZero() || t.Before(s.deleted))
}

// stateAt returns the state in force at t.
func (s *service) stateAt(t time.Time) svcState {
	st := s.states[0]
	for _, x := range s.states[1:] {
		if x.at.After(t) {
			break
		}
		st = x
	}
	return st
}

func (s *service) live() bool { return s.deleted.IsZero() }

// serviceMix creates, changes and deletes Services. It runs on the test's
// goroutine (lab methods fail the test).
type serviceMix struct {
	l     *lab.Lab
	facts *facts
	rng   *rand.Rand
	next  int
	// maxV4 keeps the IPv4 pool from running out, which would make
	// creations fail for a reason that is no fault.
	maxV4 int
}

// create adds Services of kind k (two for a shared pair).
func (m *serviceMix) create(k svcKind) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{m.name()}
	var opts []lab.ServiceOption
	local := k == localV4 || k == localDual
	switch k {
	case clusterV6:
		opts = append(opts, lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	case clusterDual, localDual:
		opts = append(opts, lab.WithDualStack())
	case sharedPair:
		names = append(names, m.name())
	}
	if local {
		opts = append(opts, lab.WithLocalTrafficPolicy())
	}
	endpoints := m.endpoints()
	for i, name := range names {
		s := &service{name: name, kind: k, families: 1}
		if k == clusterDual || k == localDual {
			s.families = 2
		}
		o := opts
		if k == sharedPair {
			s.shareKey = names[0]
			o = append(o, lab.WithAnnotation(shareAnnotation, s.shareKey))
			if i == 1 {
				o = append(o, lab.WithPorts(corev1.ServicePort{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443}))
			}
		}
		svc := m.l.CreateLBService(ctx, namespace, name, o...)
		m.l.SetEndpoints(ctx, svc, m.nodeNames(endpoints)...)
		m.facts.mu.Lock()
		s.states = []svcState{{at: time.Now(), local: local, endpoints: endpoints}}
		m.facts.services = append(m.facts.services, s)
		m.facts.mu.Unlock()
		m.facts.logEvent(-1, "created Service %s (%v), endpoints on %v", name, k, m.nodeNames(endpoints))
	}
}

func (m *serviceMix) name() string {
	m.next++
	return fmt.Sprintf("svc-%d", m.next)
}

// endpoints draws the nodes with a ready endpoint: mostly one or two, at
// times every node, rarely none.
func (m *serviceMix) endpoints() []int {
	n := len(m.facts.nodes)
	var size int
	switch r := m.rng.IntN(10); {
	case r == 0:
		size = 0
	case r <= 5:
		size = 1
	case r <= 8:
		size = min(2, n)
	default:
		size = n
	}
	out := m.rng.Perm(n)[:size]
	slices.Sort(out)
	return out
}

func (m *serviceMix) nodeNames(idx []int) []string {
	names := make([]string, len(idx))
	for i, n := range idx {
		names[i] = m.facts.nodes[n]
	}
	return names
}

// liveServices returns the Services not deleted, optionally only those a
// change may touch (not sharing: a sharer's policy must match its
// partner's).
func (m *serviceMix) liveServices(unshared bool) []*service {
	m.facts.mu.Lock()
	defer m.facts.mu.Unlock()
	var out []*service
	for _, s := range m.facts.services {
		if s.live() && (!unshared || s.shareKey == "") {
			out = append(out, s)
		}
	}
	return out
}

// v4InUse counts the IPv4 addresses the live Services take.
func (m *serviceMix) v4InUse() int {
	n := 0
	seen := map[string]bool{}
	for _, s := range m.liveServices(false) {
		if s.kind == clusterV6 || s.shareKey != "" && seen[s.shareKey] {
			continue
		}
		seen[s.shareKey] = s.shareKey != ""
		n++
	}
	return n
}

// createRandom creates a Service of a kind drawn from the mix, if the pool
// has room.
func (m *serviceMix) createRandom() {
	k := svcKind(m.rng.IntN(int(svcKinds)))
	if m.v4InUse()+2 > m.maxV4 {
		m.facts.logEvent(-1, "no Service created: the IPv4 pool is nearly used up")
		return
	}
	m.create(k)
}

// deleteRandom deletes one live Service.
func (m *serviceMix) deleteRandom() {
	live := m.liveServices(false)
	if len(live) <= 2 {
		return
	}
	s := live[m.rng.IntN(len(live))]
	m.facts.mu.Lock()
	s.deleted = time.Now()
	m.facts.mu.Unlock()
	m.facts.logEvent(-1, "deleted Service %s (%v, %v)", s.name, s.kind, s.ips)
	m.l.DeleteService(context.Background(), namespace, s.name)
}

// changeRandom changes one unshared Service: its traffic policy, or its
// port (which must move nothing).
func (m *serviceMix) changeRandom() {
	live := m.liveServices(true)
	if len(live) == 0 {
		return
	}
	s := live[m.rng.IntN(len(live))]
	togglePolicy := m.rng.IntN(2) == 0
	m.facts.mu.Lock()
	st := s.states[len(s.states)-1]
	m.facts.mu.Unlock()
	err := m.update(s.name, func(svc *corev1.Service) {
		if !togglePolicy {
			svc.Spec.Ports[0].Port = 8000 + int32(m.rng.IntN(1000))
			return
		}
		if st.local {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			svc.Spec.HealthCheckNodePort = 0
		} else {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
	})
	if err != nil {
		m.facts.logEvent(-1, "changing Service %s failed: %v", s.name, err)
		return
	}
	if !togglePolicy {
		m.facts.logEvent(-1, "changed the port of Service %s", s.name)
		return
	}
	m.setState(s, svcState{local: !st.local, endpoints: st.endpoints})
	m.facts.logEvent(-1, "changed Service %s to externalTrafficPolicy Local=%v (endpoints on %v)", s.name, !st.local, m.nodeNames(st.endpoints))
}

// moveEndpoints gives an unshared Service new ready endpoints.
func (m *serviceMix) moveEndpoints() {
	live := m.liveServices(true)
	if len(live) == 0 {
		return
	}
	s := live[m.rng.IntN(len(live))]
	eps := m.endpoints()
	svc, err := m.l.Client.CoreV1().Services(namespace).Get(context.Background(), s.name, metav1.GetOptions{})
	if err != nil {
		m.facts.logEvent(-1, "moving the endpoints of %s failed: %v", s.name, err)
		return
	}
	m.facts.mu.Lock()
	local := s.states[len(s.states)-1].local
	m.facts.mu.Unlock()
	// The record changes first: from now on the old endpoints may be
	// gone for the daemons that see the write first.
	m.setState(s, svcState{local: local, endpoints: eps})
	m.l.SetEndpoints(context.Background(), svc, m.nodeNames(eps)...)
	m.facts.logEvent(-1, "moved the endpoints of Service %s (Local=%v) to %v", s.name, local, m.nodeNames(eps))
}

func (m *serviceMix) setState(s *service, st svcState) {
	m.facts.mu.Lock()
	defer m.facts.mu.Unlock()
	st.at = time.Now()
	s.states = append(s.states, st)
}

// update applies change to the Service, retrying on conflicts with the
// IPAM leader's status writes.
func (m *serviceMix) update(name string, change func(*corev1.Service)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		svc, err := m.l.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(svc)
		_, err = m.l.Client.CoreV1().Services(namespace).Update(ctx, svc, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}
