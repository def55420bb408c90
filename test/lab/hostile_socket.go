package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// listen opens the packet socket in From's namespace that sends the frames
// and receives the unicast frames that reach the namespace (answers to the
// requester or to a foreign MAC among them), and nothing it or the rest of
// the namespace sends.
func (h Hostile) listen() (*packet.Conn, error) {
	return h.From.packetConn([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 1, SkipTrue: 1}, // group address
		accept,
		reject,
	}, true)
}

// SelfAddressed counts the frames the namespace sends to its own MAC on its
// link, until stop is called, which returns the count: answers to requests
// made in the namespace's own name, which a responder must not send.
func (ns *NS) SelfAddressed() (stop func() int, err error) {
	prog := append(append(macDiffers(0, ns.MAC, 5), macDiffers(6, ns.MAC, 1)...), accept, reject)
	conn, err := ns.packetConn(prog, false)
	if err != nil {
		return nil, err
	}
	n := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFrom(buf); err != nil {
				return
			}
			n++
		}
	})
	return func() int {
		conn.Close()
		wg.Wait()
		return n
	}, nil
}

var (
	accept bpf.Instruction = bpf.RetConstant{Val: 1 << 16}
	reject bpf.Instruction = bpf.RetConstant{Val: 0}
)

// macDiffers compares the 6 bytes at offset off of a frame with mac and
// skips the skip instructions that follow it if they differ.
func macDiffers(off uint32, mac net.HardwareAddr, skip uint8) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: off, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(mac[0:4]), SkipTrue: skip + 2},
		bpf.LoadAbsolute{Off: off + 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(binary.BigEndian.Uint16(mac[4:6])), SkipTrue: skip},
	}
}

// packetConn opens a packet socket for every EtherType on the namespace's
// link that receives what prog accepts; with ignoreOutgoing, nothing that
// leaves the namespace.
func (ns *NS) packetConn(prog []bpf.Instruction, ignoreOutgoing bool) (*packet.Conn, error) {
	filter, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	var conn *packet.Conn
	err = ns.Do(func() error {
		ifi, err := net.InterfaceByName(ns.Link)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: filter})
		if err != nil {
			return err
		}
		rc, err := conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
			if ignoreOutgoing {
				serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1))
			}
		})
		return errors.Join(err, serr)
	})
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("packet socket in %s: %w", ns.Name, err)
	}
	return conn, nil
}
