package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// JSON writes r as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Table writes r as tables, one section per part, for people.
func (r *Report) Table(w io.Writer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	leader := r.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(tw, "IPAM leader: %s\n\n", leader)

	fmt.Fprintln(tw, "NODE\tLIVE\tREADY\tEXCLUDED\tVERSION\tCONFIG\tPOOLS\tDIFFERS")
	for _, n := range r.Nodes {
		live := yes(n.Live)
		if !n.Member {
			live = "no l2lbd"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, live, yes(n.Ready), yes(n.Excluded),
			dash(n.Version), dash(n.ConfigDigest), dash(strings.Join(n.Pools, ",")), dash(strings.Join(n.Differs, ",")))
	}

	fmt.Fprintln(tw, "\nPOOL\tIPV4 USED/SIZE\tIPV6 USED/SIZE\tFREE\tNODE SELECTOR\tNODES")
	for _, p := range r.Pools {
		fmt.Fprintf(tw, "%s\t%d/%s\t%d/%s\t%s\t%s\t%s\n", p.Name, p.IPv4.Used, p.IPv4.Size, p.IPv6.Used, p.IPv6.Size, p.Free,
			dash(p.NodeSelector), dash(strings.Join(p.Nodes, ",")))
	}

	fmt.Fprintln(tw, "\nADDRESS\tPOOL\tNODE\tINTERFACE\tSINCE\tSERVICES")
	for _, a := range r.Addresses {
		since := "-"
		if a.Since != nil {
			since = now.Sub(*a.Since).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.IP, a.Pool, dash(a.Node), dash(a.Interface), since, strings.Join(a.Services, ","))
	}

	if len(r.Pending) > 0 {
		fmt.Fprintln(tw, "\nPENDING SERVICE\tREASON")
		for _, p := range r.Pending {
			fmt.Fprintf(tw, "%s\t%s\n", p.Service, p.Reason)
		}
	}
	if len(r.Conflicts) > 0 {
		fmt.Fprintln(tw, "\nCONFLICT\tNODE\tSERVICE\tMESSAGE")
		for _, c := range r.Conflicts {
			fmt.Fprintf(tw, "%s ago\t%s\t%s\t%s\n", now.Sub(c.Time).Round(time.Second), c.Node, c.Service, c.Message)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Attention) > 0 {
		fmt.Fprintln(w, "\nNeeds attention:")
		for _, a := range r.Attention {
			fmt.Fprintf(w, "  - %s\n", a)
		}
	} else {
		fmt.Fprintln(w, "\nAll is well.")
	}
	return nil
}
