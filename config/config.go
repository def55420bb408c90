// Package config owns l2lbd's configuration file, /etc/l2lb/l2lbd.yaml (schema
// v1): strict parsing with file:line:col errors, defaults, validation, and
// Watch, which hot-reloads it. A *Config is immutable once returned: a reload
// builds a new one and swaps it in whole.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// DefaultPath is where packages install the configuration file.
const DefaultPath = "/etc/l2lb/l2lbd.yaml"

// DefaultQPS and DefaultBurst are kubernetes.qps and kubernetes.burst's
// defaults. Steady state needs about one request per renewInterval (the Lease
// renewal); these matter for the status writes after a cold start: they let
// 5,000 through in 8 s, faster than the lab's API server takes them (about
// 250 a second on two cores it shares with etcd and three daemons), so that
// the API server, not the client, sets the pace.
const (
	DefaultQPS   = 500
	DefaultBurst = 1000
)

// Config is one parsed, defaulted and validated configuration file.
type Config struct {
	// NodeName must equal the Kubernetes Node name; defaults to the hostname.
	NodeName   string
	Kubeconfig string
	// Kubernetes tunes the client of the API server at Kubeconfig.
	Kubernetes Kubernetes
	// LoadBalancerClass selects the Services l2lb serves; ServeUnclassed adds
	// LoadBalancer Services that set no class.
	LoadBalancerClass string
	ServeUnclassed    bool
	// Interfaces this node may answer on; empty means every up, non-loopback
	// interface whose subnet contains the IP.
	Interfaces   []string
	Pools        []Pool
	Placement    Placement
	Coordination Coordination
	Announce     Announce
	Metrics      Metrics
	Log          Log

	// digest identifies the file's content, so peers can tell whether they run
	// the same configuration.
	digest string
}

// Pool is a named set of addresses Services may be given.
type Pool struct {
	Name      string
	Addresses []Range
	// Interface, when set, is the only interface this pool is answered on.
	Interface     string
	AutoAssign    bool
	AvoidBuggyIPs bool
	// Namespaces, when non-empty, are the only namespaces whose Services may
	// use this pool.
	Namespaces []string
	// NodeSelector, when set, restricts the nodes that may announce the
	// pool's addresses to those whose Node labels it matches (SelectsNode).
	NodeSelector *metav1.LabelSelector
	selector     labels.Selector // NodeSelector compiled by Parse
}

// Placement configures how addresses are spread over the nodes.
type Placement struct {
	// Rebalance moves addresses from a node that holds more than its fair
	// share (after restarts) to the nodes rendezvous hashing prefers, one
	// graceful handover at a time and rate-limited. Off, an address stays
	// with its owner until that node fails: a move breaks the long-lived
	// connections some clients hold.
	Rebalance bool
}

// Kubernetes configures the client of the API server. It takes effect at a
// restart, like Kubeconfig.
type Kubernetes struct {
	// QPS and Burst are the client-side token bucket shared by every
	// request. They are set high enough that the API server, which answers
	// 429 when it is overloaded, is the limit: after a cold start the IPAM
	// leader writes thousands of Service statuses at once.
	QPS   float64
	Burst int
}

// Coordination configures the Lease protocol between the nodes.
type Coordination struct {
	Namespace     string
	RenewInterval time.Duration
	LeaseDuration time.Duration
}

// DefaultRefresh re-announces every owned IP once a minute. Switches forget
// a MAC not seen for 300 s (the IEEE 802.1D default; Linux bridges' and
// Open vSwitch's too), and a NIC that only answers for addresses (the API
// traffic leaves by another) sends nothing else: the switch would flood its
// traffic, or drop it where unknown unicast is not flooded. A minute leaves
// four lost refreshes per ageing period to spare, and corrects within a
// minute a neighbour cache that missed a takeover's burst. More often buys
// little and costs every host on the segment more broadcasts: 5,000
// addresses are some 83 a second at a minute.
const DefaultRefresh = time.Minute

// Announce configures gratuitous ARP and unsolicited Neighbor Advertisements.
type Announce struct {
	Count    int
	Interval time.Duration
	// Refresh re-announces every owned IP periodically; 0 disables it.
	Refresh time.Duration
}

// Metrics configures the Prometheus endpoint; an empty Address disables it.
type Metrics struct {
	Address string
}

// Log configures the daemon's logging.
type Log struct {
	Level slog.Level
}

// Default returns the values a file's omitted fields take. NodeName is left
// empty: it defaults to the hostname, which Parse is given.
func Default() Config {
	return Config{
		Kubeconfig:        "/etc/l2lb/kubeconfig",
		LoadBalancerClass: "l2lb.dev/layer2",
		ServeUnclassed:    true,
		Placement:         Placement{Rebalance: true},
		Coordination: Coordination{
			Namespace:     "l2lb-system",
			RenewInterval: time.Second,
			LeaseDuration: 3 * time.Second,
		},
		Kubernetes: Kubernetes{QPS: DefaultQPS, Burst: DefaultBurst},
		Announce:   Announce{Count: 3, Interval: time.Second, Refresh: DefaultRefresh},
		Metrics:    Metrics{Address: "127.0.0.1:9473"},
		Log:        Log{Level: slog.LevelInfo},
	}
}

// defaultPool returns the values a pool's omitted fields take.
func defaultPool() Pool {
	return Pool{AutoAssign: true}
}

// Digest is a short hash of the file the configuration was parsed from.
func (c *Config) Digest() string { return c.digest }

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// PoolFor returns the pool holding ip, if any.
func (c *Config) PoolFor(ip netip.Addr) (*Pool, bool) {
	for i := range c.Pools {
		if c.Pools[i].Contains(ip) {
			return &c.Pools[i], true
		}
	}
	return nil, false
}

// Pool returns the pool with the given name.
func (c *Config) Pool(name string) (*Pool, bool) {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i], true
		}
	}
	return nil, false
}

// Contains reports whether ip lies in one of the pool's ranges.
func (p *Pool) Contains(ip netip.Addr) bool {
	for _, r := range p.Addresses {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// AllowsNamespace reports whether Services in ns may use the pool.
func (p *Pool) AllowsNamespace(ns string) bool {
	if len(p.Namespaces) == 0 {
		return true
	}
	for _, n := range p.Namespaces {
		if n == ns {
			return true
		}
	}
	return false
}
