package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/config"
)

// Annotations l2lb reads on Services.
const (
	AnnotationPool     = "l2lb.dev/pool"
	AnnotationIPs      = "l2lb.dev/ips"
	AnnotationSharedIP = "l2lb.dev/allow-shared-ip"

	// OpenELB's, honoured so that Services migrate without edits.
	openELBOptIn    = "lb.kubesphere.io/v1alpha1"
	openELBPool     = "eip.openelb.kubesphere.io/v1alpha2"
	porterPool      = "eip.porter.kubesphere.io/v1alpha2"
	openELBAddress  = "eip.openelb.kubesphere.io/v1alpha1"
	openELBOptValue = "openelb"
	porterOptValue  = "porter"
)

// Serves reports whether l2lb serves svc under c: a LoadBalancer Service of
// our class, or of no class when serveUnclassed is set or OpenELB's opt-in
// annotation asks for it.
func Serves(c *config.Config, svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if class := svc.Spec.LoadBalancerClass; class != nil {
		return *class == c.LoadBalancerClass
	}
	if v := svc.Annotations[openELBOptIn]; v == openELBOptValue || v == porterOptValue {
		return true
	}
	return c.ServeUnclassed
}

// FromService translates a Service we serve into what allocation needs.
// Annotations it cannot act on make the result Invalid, with a reason the
// Service's author can act on; they are never fatal.
func FromService(svc *corev1.Service) Service {
	s := Service{
		Key:           Key{svc.Namespace, svc.Name},
		Created:       svc.CreationTimestamp.Time,
		SharingKey:    svc.Annotations[AnnotationSharedIP],
		TrafficPolicy: string(svc.Spec.ExternalTrafficPolicy),
	}
	if s.TrafficPolicy == "" {
		s.TrafficPolicy = string(corev1.ServiceExternalTrafficPolicyCluster)
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		s.Ports = append(s.Ports, Port{Protocol: string(proto), Port: p.Port})
	}
	s.Current = IngressIPs(svc)
	s.Families, s.Required = families(svc)

	var problems []string
	pool, err := oneOf(svc.Annotations, AnnotationPool, openELBPool, porterPool)
	if err != nil {
		problems = append(problems, err.Error())
	}
	s.Pool = pool
	req, err := requested(svc)
	if err != nil {
		problems = append(problems, err.Error())
	}
	s.Requested = req
	for _, ip := range req {
		if !slices.Contains(s.Families, familyOf(ip)) {
			problems = append(problems, fmt.Sprintf("requested %s but the Service's ipFamilies are %v", ip, s.Families))
		}
	}
	s.Invalid = strings.Join(problems, "; ")
	return s
}

// IngressIPs returns the addresses svc's status records; hostnames and
// malformed entries are skipped.
func IngressIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// families maps spec.ipFamilies and ipFamilyPolicy to the families wanted and
// how many of them are required.
func families(svc *corev1.Service) ([]Family, int) {
	var fs []Family
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			fs = append(fs, IPv4)
		case corev1.IPv6Protocol:
			fs = append(fs, IPv6)
		}
	}
	if len(fs) == 0 { // not yet defaulted by the API server
		fs = []Family{IPv4}
	}
	required := len(fs)
	if p := svc.Spec.IPFamilyPolicy; p != nil && *p == corev1.IPFamilyPolicyPreferDualStack {
		required = 1
	}
	return fs, required
}

// oneOf returns the value of whichever of the annotations is set; they must
// agree.
func oneOf(ann map[string]string, keys ...string) (string, error) {
	var val, from string
	for _, k := range keys {
		v, ok := ann[k]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if from != "" && v != val {
			return "", fmt.Errorf("annotations %s=%q and %s=%q disagree", from, val, k, v)
		}
		val, from = v, k
	}
	return val, nil
}

// requested collects the addresses asked for by l2lb.dev/ips,
// spec.loadBalancerIP and OpenELB's annotation; they must agree.
func requested(svc *corev1.Service) ([]netip.Addr, error) {
	sources := []struct{ name, value string }{
		{AnnotationIPs, svc.Annotations[AnnotationIPs]},
		{"spec.loadBalancerIP", svc.Spec.LoadBalancerIP},
		{openELBAddress, svc.Annotations[openELBAddress]},
	}
	var out []netip.Addr
	var from string
	for _, src := range sources {
		if strings.TrimSpace(src.value) == "" {
			continue
		}
		ips, err := parseIPList(src.name, src.value)
		if err != nil {
			return nil, err
		}
		if from != "" && !sameSet(out, ips) {
			return nil, fmt.Errorf("%s=%q disagrees with %s", src.name, src.value, from)
		}
		out, from = ips, src.name
	}
	return out, nil
}

func parseIPList(name, value string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[Family]bool{}
	for _, part := range strings.Split(value, ",") {
		ip, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("%s: %q is not an IP address", name, strings.TrimSpace(part))
		}
		ip = ip.Unmap()
		if seen[familyOf(ip)] {
			return nil, fmt.Errorf("%s: at most one address per family, got %q", name, value)
		}
		seen[familyOf(ip)] = true
		out = append(out, ip)
	}
	return out, nil
}

func sameSet(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}
