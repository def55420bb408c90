package ipam

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/config"
)

func lbService(mods ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "shop", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Port: 80}, {Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func ann(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[k] = v }
}

func class(c string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c }
}

func TestServes(t *testing.T) {
	c := config.Default()
	unclassedOff := config.Default()
	unclassedOff.ServeUnclassed = false
	tests := []struct {
		name string
		cfg  *config.Config
		svc  *corev1.Service
		want bool
	}{
		{"unclassed served by default", &c, lbService(), true},
		{"our class", &unclassedOff, lbService(class("l2lb.dev/layer2")), true},
		{"other class", &c, lbService(class("metallb.io/x")), false},
		{"unclassed off", &unclassedOff, lbService(), false},
		{"openelb opt-in", &unclassedOff, lbService(ann("lb.kubesphere.io/v1alpha1", "openelb")), true},
		{"porter opt-in", &unclassedOff, lbService(ann("lb.kubesphere.io/v1alpha1", "porter")), true},
		{"not a load balancer", &c, lbService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), false},
	}
	for _, tc := range tests {
		if got := Serves(tc.cfg, tc.svc); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFromService(t *testing.T) {
	prefer := corev1.IPFamilyPolicyPreferDualStack
	tests := []struct {
		name string
		svc  *corev1.Service
		want string // fmt of the interesting fields
	}{
		{"plain", lbService(), "fam=[IPv4]/1 pool= req=[] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid="},
		{"annotations", lbService(ann(AnnotationPool, "lan"), ann(AnnotationIPs, "198.51.100.200, 2001:db8:100::200"), ann(AnnotationSharedIP, "k"),
			func(s *corev1.Service) {
				s.Spec.IPFamilies = append(s.Spec.IPFamilies, corev1.IPv6Protocol)
				s.Spec.IPFamilyPolicy = &prefer
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}),
			"fam=[IPv4 IPv6]/1 pool=lan req=[198.51.100.200 2001:db8:100::200] key=k ports=[{TCP 80} {UDP 53}] policy=Local invalid="},
		{"loadBalancerIP", lbService(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.201" }), "fam=[IPv4]/1 pool= req=[198.51.100.201] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid="},
		{"openelb", lbService(ann("eip.openelb.kubesphere.io/v1alpha2", "eip-pool"), ann("eip.openelb.kubesphere.io/v1alpha1", "198.51.100.202")),
			"fam=[IPv4]/1 pool=eip-pool req=[198.51.100.202] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid="},
		{"malformed ip", lbService(ann(AnnotationIPs, "198.51.100.300")), `fam=[IPv4]/1 pool= req=[] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid=l2lb.dev/ips: "198.51.100.300" is not an IP address`},
		{"two per family", lbService(ann(AnnotationIPs, "198.51.100.1,198.51.100.2")), `fam=[IPv4]/1 pool= req=[] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid=l2lb.dev/ips: at most one address per family, got "198.51.100.1,198.51.100.2"`},
		{"disagreeing requests", lbService(ann(AnnotationIPs, "198.51.100.1"), func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.2" }),
			`fam=[IPv4]/1 pool= req=[] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid=spec.loadBalancerIP="198.51.100.2" disagrees with l2lb.dev/ips`},
		{"disagreeing pools", lbService(ann(AnnotationPool, "a"), ann("eip.porter.kubesphere.io/v1alpha2", "b")),
			`fam=[IPv4]/1 pool= req=[] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid=annotations l2lb.dev/pool="a" and eip.porter.kubesphere.io/v1alpha2="b" disagree`},
		{"family mismatch", lbService(ann(AnnotationIPs, "2001:db8:100::1")), `fam=[IPv4]/1 pool= req=[2001:db8:100::1] key= ports=[{TCP 80} {UDP 53}] policy=Cluster invalid=requested 2001:db8:100::1 but the Service's ipFamilies are [IPv4]`},
	}
	for _, tc := range tests {
		s := FromService(tc.svc)
		got := fmt.Sprintf("fam=%v/%d pool=%s req=%v key=%s ports=%v policy=%s invalid=%s", s.Families, s.Required, s.Pool, s.Requested, s.SharingKey, s.Ports, s.TrafficPolicy, s.Invalid)
		if got != tc.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
