// Package logging builds l2lbd's slog handler. Under journald (systemd
// connects stderr to the journal and sets JOURNAL_STREAM) each line starts
// with its syslog priority, "<6>" for info, which journald strips and stores
// as PRIORITY= (sd-daemon(3)), so `journalctl -p warning -u l2lbd` works; the
// timestamp is left out because the journal records its own. Anywhere else
// the lines are plain slog text with a time.
package logging

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// NewHandler returns a text handler writing to w at level and above. Lines
// get a priority prefix and no time when w is the stream named by
// JOURNAL_STREAM: like sd-daemon, it compares the variable's device and
// inode with w's, so the prefix is not written to a terminal or file that
// merely inherited the variable (a command run from a service, say).
func NewHandler(w io.Writer, level slog.Leveler) slog.Handler {
	if !toJournal(w, os.Getenv("JOURNAL_STREAM")) {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	}
	j := &journalWriter{w: w}
	inner := slog.NewTextHandler(&j.buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	return &journalHandler{inner: inner, j: j}
}

// toJournal reports whether w is the stream "device:inode" in stream names.
func toJournal(w io.Writer, stream string) bool {
	dev, ino, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	wantDev, err1 := strconv.ParseUint(dev, 10, 64)
	wantIno, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == wantDev && st.Ino == wantIno
}

// priority maps a level to its syslog priority (RFC 5424): debug 7, info 6,
// warning 4, error 3. slog has no notice level, so 5 is never used.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	default:
		return 7
	}
}

// journalWriter is shared by a handler and every handler derived from it:
// the text handler formats a record into buf, which is then written to w
// with its prefix in one Write, so concurrent lines never interleave.
type journalWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out []byte
	w   io.Writer
}

type journalHandler struct {
	inner slog.Handler
	j     *journalWriter
}

var _ slog.Handler = (*journalHandler)(nil)

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	j := h.j
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	j.out = append(j.out[:0], '<')
	j.out = strconv.AppendInt(j.out, int64(priority(r.Level)), 10)
	j.out = append(j.out, '>')
	j.out = append(j.out, j.buf.Bytes()...)
	_, err := j.w.Write(j.out)
	return err
}

func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(attrs), j: h.j}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), j: h.j}
}
