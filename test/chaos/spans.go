package chaos

import (
	"slices"
	"time"
)

// span is a time interval [from, to).
type span struct{ from, to time.Time }

func (s span) dur() time.Duration { return s.to.Sub(s.from) }

// union sorts spans and merges the ones that overlap or touch.
func union(spans []span) []span {
	spans = slices.DeleteFunc(slices.Clone(spans), func(s span) bool { return !s.to.After(s.from) })
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var out []span
	for _, s := range spans {
		if n := len(out); n > 0 && !s.from.After(out[n-1].to) {
			if s.to.After(out[n-1].to) {
				out[n-1].to = s.to
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// intersect returns what two unions have in common.
func intersect(a, b []span) []span {
	var out []span
	for i, j := 0, 0; i < len(a) && j < len(b); {
		from, to := later(a[i].from, b[j].from), earlier(a[i].to, b[j].to)
		if to.After(from) {
			out = append(out, span{from, to})
		}
		if a[i].to.Before(b[j].to) {
			i++
		} else {
			j++
		}
	}
	return out
}

// subtract returns the parts of union a outside union b.
func subtract(a, b []span) []span {
	var out []span
	for _, s := range a {
		cur := s
		for _, c := range b {
			if !c.to.After(cur.from) || !c.from.Before(cur.to) {
				continue
			}
			if c.from.After(cur.from) {
				out = append(out, span{cur.from, c.from})
			}
			cur.from = c.to
			if !cur.to.After(cur.from) {
				break
			}
		}
		if cur.to.After(cur.from) {
			out = append(out, cur)
		}
	}
	return out
}

func total(spans []span) time.Duration {
	var d time.Duration
	for _, s := range spans {
		d += s.dur()
	}
	return d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
