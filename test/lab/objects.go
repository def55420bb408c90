package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ManagedBy labels the EndpointSlices the lab writes (there is no
// controller-manager in the lab to write them).
const ManagedBy = "l2lb-lab"

// ServiceOption changes a Service before CreateLBService creates it.
type ServiceOption func(*corev1.Service)

// WithClass sets spec.loadBalancerClass.
func WithClass(class string) ServiceOption {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }
}

// WithAnnotation sets an annotation.
func WithAnnotation(key, value string) ServiceOption {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[key] = value
	}
}

// WithDualStack asks for one IPv4 and one IPv6 address.
func WithDualStack() ServiceOption {
	return WithIPFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)
}

// WithIPFamilies sets spec.ipFamilyPolicy and spec.ipFamilies.
func WithIPFamilies(policy corev1.IPFamilyPolicy, families ...corev1.IPFamily) ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = families
	}
}

// WithLocalTrafficPolicy sets externalTrafficPolicy: Local.
func WithLocalTrafficPolicy() ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
}

// WithLoadBalancerIP sets the deprecated but honoured spec.loadBalancerIP.
func WithLoadBalancerIP(ip netip.Addr) ServiceOption {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip.String() }
}

// WithPorts replaces the default port (TCP 80, named http).
func WithPorts(ports ...corev1.ServicePort) ServiceOption {
	return func(s *corev1.Service) { s.Spec.Ports = ports }
}

// CreateLBService creates a Service of type LoadBalancer with port TCP 80
// (the stand-in HTTP server's), changed by opts, and without selector: its
// endpoints are what SetEndpoints says. The namespace is created if needed.
func (l *Lab) CreateLBService(ctx context.Context, namespace, name string, opts ...ServiceOption) *corev1.Service {
	l.t.Helper()
	svc, err := l.createLBService(ctx, namespace, name, opts...)
	if err != nil {
		l.t.Fatal(err)
	}
	return svc
}

// CreateLBServices creates n Services, named name(i), workers at a time, as
// a deploy tool would. Failures fail the test once all workers are done,
// from the test's goroutine.
func (l *Lab) CreateLBServices(ctx context.Context, namespace string, n, workers int, name func(i int) string, opts ...ServiceOption) {
	l.t.Helper()
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				_, errs[w] = l.createLBService(ctx, namespace, name(i), opts...)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		l.t.Fatal(err)
	}
}

func (l *Lab) createLBService(ctx context.Context, namespace, name string, opts ...ServiceOption) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(80),
			}},
		},
	}
	for _, o := range opts {
		o(svc)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := l.ensureNamespace(ctx, namespace); err != nil {
		return nil, fmt.Errorf("lab: CreateLBService %s/%s: %w", namespace, name, err)
	}
	svc, err := l.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: CreateLBService %s/%s: %w", namespace, name, err)
	}
	return svc, nil
}

func (l *Lab) ensureNamespace(ctx context.Context, name string) error {
	_, err := l.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return err
	}
	_, err = l.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// DeleteService deletes a Service and the EndpointSlices SetEndpoints wrote
// for it (no garbage collector runs in the lab). A missing Service is fine.
func (l *Lab) DeleteService(ctx context.Context, namespace, name string) {
	l.t.Helper()
	ctx, cancel := bounded(ctx)
	defer cancel()
	err := l.Client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		l.t.Fatalf("lab: DeleteService %s/%s: %v", namespace, name, err)
	}
	err = l.Client.DiscoveryV1().EndpointSlices(namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: sliceSelector(name)})
	if err != nil {
		l.t.Fatalf("lab: DeleteService %s/%s: endpointslices: %v", namespace, name, err)
	}
}

func sliceSelector(service string) string {
	return discoveryv1.LabelServiceName + "=" + service + "," + discoveryv1.LabelManagedBy + "=" + ManagedBy
}

// SetEndpoints makes the Service's endpoints exactly one ready endpoint on
// each named node (none when no node is named), in one EndpointSlice per IP
// family of the Service. The endpoint address is the node's own address of
// that family, where the stand-in HTTP server listens.
func (l *Lab) SetEndpoints(ctx context.Context, svc *corev1.Service, nodeNames ...string) {
	l.t.Helper()
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := l.setEndpoints(ctx, svc, nodeNames); err != nil {
		l.t.Fatalf("lab: SetEndpoints %s/%s %v: %v", svc.Namespace, svc.Name, nodeNames, err)
	}
}

func (l *Lab) setEndpoints(ctx context.Context, svc *corev1.Service, nodeNames []string) error {
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	var errs []error
	for _, fam := range families {
		var eps []discoveryv1.Endpoint
		for _, nodeName := range nodeNames {
			node := l.Node(nodeName)
			if node == nil {
				return fmt.Errorf("no lab node %q", nodeName)
			}
			addr := node.IPv4
			if fam == corev1.IPv6Protocol {
				addr = node.IPv6
			}
			eps = append(eps, readyEndpoint(addr, nodeName))
		}
		errs = append(errs, l.writeSlice(ctx, svc, fam, eps))
	}
	return errors.Join(errs...)
}

func readyEndpoint(addr netip.Addr, nodeName string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr.String()},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
		NodeName:   ptr(nodeName),
	}
}

// writeSlice creates or replaces the lab's EndpointSlice of one IP family
// of the Service, with the Service's ports as target ports.
func (l *Lab) writeSlice(ctx context.Context, svc *corev1.Service, fam corev1.IPFamily, eps []discoveryv1.Endpoint) error {
	var ports []discoveryv1.EndpointPort
	for _, p := range svc.Spec.Ports {
		port := p.TargetPort.IntVal
		if p.TargetPort.Type != intstr.Int || port == 0 {
			port = p.Port
		}
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Protocol: ptr(p.Protocol), Port: ptr(port)})
	}
	addrType, name := discoveryv1.AddressTypeIPv4, svc.Name+"-lab-ipv4"
	if fam == corev1.IPv6Protocol {
		addrType, name = discoveryv1.AddressTypeIPv6, svc.Name+"-lab-ipv6"
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      name,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
		},
		AddressType: addrType,
		Ports:       ports,
		Endpoints:   append([]discoveryv1.Endpoint{}, eps...),
	}
	slices := l.Client.DiscoveryV1().EndpointSlices(svc.Namespace)
	old, err := slices.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, slice, metav1.CreateOptions{})
	case err == nil:
		slice.ResourceVersion = old.ResourceVersion
		_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ServeHTTP runs the kube-proxy stand-in on the node: an HTTP server on
// port 80 of every address in the node's namespace (lo-bound Service IPs
// included) answering the node name, so a client can tell who served it.
func (l *Lab) ServeHTTP(n *Node) {
	l.t.Helper()
	if err := l.serveName(n.NS, n.Name); err != nil {
		l.t.Fatalf("lab: ServeHTTP %s: %v", n.Name, err)
	}
}

// serveName runs an HTTP server on port 80 of every address in ns that
// answers name, until the test ends.
func (l *Lab) serveName(ns *NS, name string) error {
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":80")
		return err
	})
	if err != nil {
		return err
	}
	body := name + "\n"
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(body))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	stop := func() {
		srv.Close()
		<-done
	}
	l.run.addCloser(stop)
	l.t.Cleanup(stop)
	return nil
}

// BindOnLo puts ips on the namespace's lo, where kube-proxy in IPVS mode or
// with strictARP has Service IPs: the node accepts traffic for them, and
// its kernel does not answer ARP/NDP for them (arp_ignore=1; NDP answers
// only for addresses of the receiving link).
func (n *NS) BindOnLo(t testing.TB, ips ...netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ip := range ips {
		if err := n.AddAddr(ctx, "lo", netip.PrefixFrom(ip, ip.BitLen())); err != nil {
			t.Fatalf("lab: BindOnLo %s %v: %v", n.Name, ip, err)
		}
	}
}

// UnbindFromLo removes ip from the namespace's lo.
func (n *NS) UnbindFromLo(t testing.TB, ip netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.DelAddr(ctx, "lo", netip.PrefixFrom(ip, ip.BitLen())); err != nil {
		t.Fatalf("lab: UnbindFromLo %s %v: %v", n.Name, ip, err)
	}
}

// CutOff makes the API server unreachable from the node while the node
// stays on the segment: a blackhole policy rule for the API address in the
// node's namespace, ahead of every route (so it also holds on a node with a
// ManagementNIC). New connections fail at once (connect: invalid argument);
// established ones lose every packet, so their requests time out.
func (l *Lab) CutOff(n *Node) {
	l.t.Helper()
	if err := l.blackhole(n, "add"); err != nil {
		l.t.Fatalf("lab: CutOff %s: %v", n.Name, err)
	}
}

// Restore undoes CutOff.
func (l *Lab) Restore(n *Node) {
	l.t.Helper()
	if err := l.blackhole(n, "del"); err != nil {
		l.t.Fatalf("lab: Restore %s: %v", n.Name, err)
	}
}

// cutOffPref is the priority of CutOff's rule: after the local table's
// (0), before main's (32766).
const cutOffPref = "90"

func (l *Lab) blackhole(n *Node, op string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := netip.PrefixFrom(BridgeV4, 32).String()
	_, err := ipCmd(ctx, nil, "-n", n.NS.Name, "rule", op, "to", dst, "blackhole", "pref", cutOffPref)
	if err != nil && op == "del" && strings.Contains(err.Error(), "No such file or directory") {
		return fmt.Errorf("node is not cut off: %w", err)
	}
	return err
}

// ManagementNIC gives node a second interface, mgmt0, that reaches the API
// server without crossing the segment: a veth to the root namespace with a
// /31 of 203.0.113.0/24 (TEST-NET-3, never routed off the machine) and a
// host route to the API address over it. A fault on eth0 (SetCarrier) then
// leaves the node's API connection alone, as on hosts with a separate
// management network.
func (l *Lab) ManagementNIC(n *Node) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	i := slices.Index(l.Net.Nodes, n.NS)
	root := strings.Replace(n.NS.Name, "-n", "-m", 1)
	hostEnd := netip.AddrFrom4([4]byte{203, 0, 113, byte(2 * i)})
	nodeEnd := hostEnd.Next()
	l.Net.run.addLink(root)
	steps := [][]string{
		{"link", "add", root, "type", "veth", "peer", "name", "mgmt0", "netns", n.NS.Name},
		{"addr", "add", netip.PrefixFrom(hostEnd, 31).String(), "dev", root},
		{"link", "set", root, "up"},
		{"-n", n.NS.Name, "addr", "add", netip.PrefixFrom(nodeEnd, 31).String(), "dev", "mgmt0"},
		{"-n", n.NS.Name, "link", "set", "mgmt0", "up"},
		{"-n", n.NS.Name, "route", "add", netip.PrefixFrom(BridgeV4, 32).String(), "via", hostEnd.String(), "dev", "mgmt0"},
	}
	for _, args := range steps {
		if _, err := ipCmd(ctx, nil, args...); err != nil {
			l.t.Fatalf("lab: ManagementNIC %s: %v", n.Name, err)
		}
	}
}

// SetCarrier takes the bridge end of the node's eth0 down or up: the node's
// eth0 stays administratively up and loses carrier, as when a cable or a
// switch port fails.
func (l *Lab) SetCarrier(n *Node, up bool) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state := "down"
	if up {
		state = "up"
	}
	if _, err := ipCmd(ctx, nil, "link", "set", n.NS.Name, state); err != nil {
		l.t.Fatalf("lab: SetCarrier %s %s: %v", n.Name, state, err)
	}
}
