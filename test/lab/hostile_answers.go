package lab

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// answerLog counts the answers a run receives.
type answerLog struct {
	owners    map[netip.Addr]net.HardwareAddr
	requester string
	foreign   map[string]bool

	mu         sync.Mutex
	answers    map[netip.Addr]map[string]int
	last       map[netip.Addr]time.Time // the owner's latest answer
	silence    map[netip.Addr]time.Duration
	end        time.Time // requests stopped
	unexpected int
}

// newAnswerLog counts answers to requester, and to foreign MACs, from start
// on.
func newAnswerLog(owners map[netip.Addr]net.HardwareAddr, requester net.HardwareAddr, foreign []net.HardwareAddr, start time.Time) *answerLog {
	l := &answerLog{
		owners: owners, requester: requester.String(), foreign: map[string]bool{},
		answers: map[netip.Addr]map[string]int{}, last: map[netip.Addr]time.Time{}, silence: map[netip.Addr]time.Duration{},
	}
	for ip := range owners {
		l.last[ip] = start
	}
	for _, mac := range foreign {
		l.foreign[mac.String()] = true
	}
	return l
}

func (l *answerLog) stop(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end = at
}

// read counts frames until the conn's deadline passes or it fails.
func (l *answerLog) read(conn *packet.Conn) {
	buf := make([]byte, 2048)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if ip, from, to, ok := parseAnswer(buf[:n]); ok {
			l.record(ip, from, to, time.Now())
		}
	}
}

func (l *answerLog) record(ip netip.Addr, from, to string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.foreign[to] {
		l.unexpected++
	}
	if to != l.requester {
		return
	}
	if l.answers[ip] == nil {
		l.answers[ip] = map[string]int{}
	}
	l.answers[ip][from]++
	if owner, ok := l.owners[ip]; ok && owner.String() == from && (l.end.IsZero() || at.Before(l.end)) {
		l.silence[ip] = max(l.silence[ip], at.Sub(l.last[ip]))
		l.last[ip] = at
	}
}

// fill copies the counts into rep.
func (l *answerLog) fill(rep *Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rep.Answers, rep.Unexpected, rep.Silence = l.answers, l.unexpected, map[netip.Addr]time.Duration{}
	for ip := range rep.Asked {
		rep.Silence[ip] = max(l.silence[ip], l.end.Sub(l.last[ip]))
	}
}

// parseAnswer reads an ARP reply or a Neighbor Advertisement: the address
// answered for, the MAC answering for it and the MAC the answer is for.
func parseAnswer(f []byte) (ip netip.Addr, from, to string, ok bool) {
	if len(f) < ethLen {
		return ip, "", "", false
	}
	to = net.HardwareAddr(f[0:6]).String()
	switch binary.BigEndian.Uint16(f[12:14]) {
	case unix.ETH_P_ARP:
		var p arp.Packet
		if p.UnmarshalBinary(f[ethLen:]) != nil || p.Operation != arp.OperationReply {
			return ip, "", "", false
		}
		return p.SenderIP, p.SenderHardwareAddr.String(), to, true
	case unix.ETH_P_IPV6:
		if len(f) < icmpOffset || f[ethLen+6] != unix.IPPROTO_ICMPV6 {
			return ip, "", "", false
		}
		end := icmpOffset + int(binary.BigEndian.Uint16(f[ethLen+4:ethLen+6]))
		if end > len(f) {
			return ip, "", "", false
		}
		m, err := ndp.ParseMessage(f[icmpOffset:end])
		na, isNA := m.(*ndp.NeighborAdvertisement)
		if err != nil || !isNA {
			return ip, "", "", false
		}
		from = net.HardwareAddr(f[6:12]).String()
		if i := slices.IndexFunc(na.Options, isTargetLL); i >= 0 {
			from = na.Options[i].(*ndp.LinkLayerAddress).Addr.String()
		}
		return na.TargetAddress, from, to, true
	}
	return ip, "", "", false
}

func isTargetLL(o ndp.Option) bool {
	ll, ok := o.(*ndp.LinkLayerAddress)
	return ok && ll.Direction == ndp.Target
}
