package netio

import (
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func timespec(t time.Time) []byte {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
}

func TestRxTimestamp(t *testing.T) {
	at := time.Date(2026, 5, 28, 7, 8, 54, 123456789, time.UTC)
	stamp := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespec(at))
	tests := []struct {
		name string
		oob  []byte
		want time.Time
	}{
		{"SCM_TIMESTAMPNS", stamp, at},
		{"after another message", append(cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, make([]byte, 20)), stamp...), at},
		{"none", nil, time.Time{}},
		{"another level", cmsg(unix.SOL_PACKET, unix.SCM_TIMESTAMPNS, timespec(at)), time.Time{}},
		{"data too short", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, make([]byte, 8)), time.Time{}},
		{"truncated (MSG_CTRUNC)", stamp[:unix.CmsgLen(0)+4], time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rxTimestamp(tt.oob); !got.Equal(tt.want) {
				t.Errorf("rxTimestamp = %v, want %v", got, tt.want)
			}
		})
	}
	if n := unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))); n > oobLen {
		t.Errorf("an SCM_TIMESTAMPNS message takes %d bytes, oobLen is %d", n, oobLen)
	}
	if n := testing.AllocsPerRun(100, func() { rxTimestamp(stamp) }); n != 0 {
		t.Errorf("rxTimestamp allocates %v times per frame, want 0", n)
	}
}

func TestStale(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		rx   time.Time
		want bool
	}{
		{"no timestamp", time.Time{}, false},
		{"just received", now, false},
		{"waited the bound", now.Add(-staleRequest), false},
		{"waited longer", now.Add(-staleRequest - time.Nanosecond), true},
		{"queued through a pause", now.Add(-5 * time.Second), true},
		{"from the future (clock stepped back)", now.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Kernel timestamps carry no monotonic reading.
			if got := stale(tt.rx.Round(0), now); got != tt.want {
				t.Errorf("stale = %v, want %v", got, tt.want)
			}
		})
	}
}
