package netio

import "golang.org/x/net/bpf"

type bpfInstruction = bpf.RawInstruction

// The filters run in the kernel on every frame of their EtherType on the
// interface, so the responders wake up only for frames they may act on.
// Offsets count from the start of the Ethernet header (SOCK_RAW).
var (
	arpFilter = mustAssemble(arpProgram)
	ndpFilter = mustAssemble(ndpProgram)
)

const acceptAll = 0x40000 // snap length larger than any frame

// arpProgram accepts ARP for IPv4 over Ethernet: htype 1, ptype 0x0800,
// hlen 6, plen 4.
var arpProgram = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 12, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeARP, SkipTrue: 6},
	bpf.LoadAbsolute{Off: 14, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 1, SkipTrue: 4},
	bpf.LoadAbsolute{Off: 16, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv4, SkipTrue: 2},
	bpf.LoadAbsolute{Off: 18, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0604, SkipTrue: 1},
	bpf.RetConstant{Val: 0},
	bpf.RetConstant{Val: acceptAll},
}

// ndpProgram accepts IPv6 frames whose first header is ICMPv6 with hop limit
// 255 (RFC 4861 7.1.1: anything else was forwarded and must be dropped) and
// type Neighbor Solicitation (135) or Advertisement (136). Unicast NUD
// probes addressed to an owned IP pass here although no socket of the IPv6
// stack would ever receive them.
var ndpProgram = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 12, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 7},
	bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 5},
	bpf.LoadAbsolute{Off: ethHeaderLen + 7, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 255, SkipTrue: 3},
	bpf.LoadAbsolute{Off: ethHeaderLen + ip6HeaderLen, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpLessThan, Val: icmpNeighborSolicitation, SkipTrue: 1},
	bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: icmpNeighborAdvertisement, SkipTrue: 1},
	bpf.RetConstant{Val: 0},
	bpf.RetConstant{Val: acceptAll},
}

func mustAssemble(p []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(p)
	if err != nil {
		panic("netio: bad BPF program: " + err.Error())
	}
	return raw
}
