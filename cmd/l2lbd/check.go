package main

import (
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	var path string
	code, ok := flags("check [--config PATH]", "Validates the configuration file. Exit status 0 and a summary when it is good;\n1 and every problem, each with its field and file:line:col, when it is not.\nWith a reachable API server it also warns when the kubeconfig's credential may\nwrite more than this node's own objects.", args, stdout, stderr, configFlag(&path))
	if !ok {
		return code
	}
	hostname, _ := os.Hostname()
	c, _, err := config.Load(path, hostname)
	if err != nil {
		problems := config.Problems(err)
		if len(problems) == 0 {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		for _, p := range problems {
			fmt.Fprintln(stderr, p.Error())
		}
		fmt.Fprintf(stderr, "%s: %d problem(s); not valid\n", path, len(problems))
		return 1
	}
	summarize(stdout, path, c)
	for _, w := range hostWarnings("/") {
		fmt.Fprintln(stderr, w)
	}
	checkCredential(stdout, stderr, c)
	return 0
}

func summarize(w io.Writer, path string, c *config.Config) {
	fmt.Fprintf(w, "%s: ok (digest %s)\n", path, c.Digest())
	classes := fmt.Sprintf("class %s", c.LoadBalancerClass)
	if c.ServeUnclassed {
		classes += " and LoadBalancer Services with no class"
	}
	fmt.Fprintf(w, "node %s serves %s\n", c.NodeName, classes)
	if len(c.Interfaces) == 0 {
		fmt.Fprintln(w, "interfaces: any up interface whose subnet holds the IP")
	} else {
		fmt.Fprintf(w, "interfaces: %s\n", strings.Join(c.Interfaces, ", "))
	}
	fmt.Fprintf(w, "pools: %d\n", len(c.Pools))
	if len(c.Pools) == 0 {
		fmt.Fprintln(w, "  none: l2lbd runs and serves no address until pools are declared")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	v4, v6 := new(big.Int), new(big.Int)
	for _, p := range c.Pools {
		p4, p6 := new(big.Int), new(big.Int)
		for _, r := range p.Addresses {
			if r.First.Is4() {
				p4.Add(p4, r.Size())
			} else {
				p6.Add(p6, r.Size())
			}
		}
		v4.Add(v4, p4)
		v6.Add(v6, p6)
		iface := "any interface"
		if p.Interface != "" {
			iface = "on " + p.Interface
		}
		assign := "auto-assign"
		if !p.AutoAssign {
			assign = "on request only"
		}
		ns := "all namespaces"
		if len(p.Namespaces) > 0 {
			ns = "namespaces " + strings.Join(p.Namespaces, ",")
		}
		nodes := ""
		if p.NodeSelector != nil {
			nodes = "\tnodes " + metav1.FormatLabelSelector(p.NodeSelector)
		}
		fmt.Fprintf(tw, "  %s\t%s IPv4\t%s IPv6\t%s\t%s\t%s%s\n", p.Name, p4, p6, iface, assign, ns, nodes)
	}
	tw.Flush()
	fmt.Fprintf(w, "addresses: %s IPv4, %s IPv6\n", v4, v6)
}
