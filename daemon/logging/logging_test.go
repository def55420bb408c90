package logging

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stream opens a temporary file and returns it with the JOURNAL_STREAM value
// journald would set for it.
func stream(t *testing.T) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func contents(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJournalLines(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug, `<7>level=DEBUG msg=m ip=198.51.100.7` + "\n"},
		{slog.LevelDebug + 2, `<7>level=DEBUG+2 msg=m ip=198.51.100.7` + "\n"},
		{slog.LevelInfo, `<6>level=INFO msg=m ip=198.51.100.7` + "\n"},
		{slog.LevelInfo + 2, `<6>level=INFO+2 msg=m ip=198.51.100.7` + "\n"},
		{slog.LevelWarn, `<4>level=WARN msg=m ip=198.51.100.7` + "\n"},
		{slog.LevelError, `<3>level=ERROR msg=m ip=198.51.100.7` + "\n"},
		{slog.LevelError + 4, `<3>level=ERROR+4 msg=m ip=198.51.100.7` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			f, js := stream(t)
			t.Setenv("JOURNAL_STREAM", js)
			log := slog.New(NewHandler(f, slog.LevelDebug))
			log.Log(context.Background(), tt.level, "m", "ip", "198.51.100.7")
			if got := contents(t, f); got != tt.want {
				t.Errorf("want %q\ngot  %q", tt.want, got)
			}
		})
	}
}

var plainLine = regexp.MustCompile(`^time=\S+ level=WARN msg="link down" ifname=eth0\n$`)

func TestPlainWhenNotTheJournal(t *testing.T) {
	tests := []struct {
		name   string
		stream func(own string) string
	}{
		{"unset", func(string) string { return "" }},
		{"another stream", func(string) string { return "1:2" }},
		{"same device, other inode", func(own string) string { dev, _, _ := strings.Cut(own, ":"); return dev + ":1" }},
		{"malformed", func(string) string { return "journal" }},
		{"not numbers", func(string) string { return "a:b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, own := stream(t)
			t.Setenv("JOURNAL_STREAM", tt.stream(own))
			slog.New(NewHandler(f, slog.LevelInfo)).Warn("link down", "ifname", "eth0")
			if got := contents(t, f); !plainLine.MatchString(got) {
				t.Errorf("want a plain slog line with time, matching %s\ngot %q", plainLine, got)
			}
		})
	}
}

// A writer that is not a file cannot be the journal's stream.
func TestPlainForNonFileWriter(t *testing.T) {
	_, own := stream(t)
	t.Setenv("JOURNAL_STREAM", own)
	var buf bytes.Buffer
	slog.New(NewHandler(&buf, slog.LevelInfo)).Warn("link down", "ifname", "eth0")
	if got := buf.String(); !plainLine.MatchString(got) {
		t.Errorf("want a plain slog line, got %q", got)
	}
}

func TestLevel(t *testing.T) {
	for _, journal := range []bool{false, true} {
		f, js := stream(t)
		if journal {
			t.Setenv("JOURNAL_STREAM", js)
		} else {
			t.Setenv("JOURNAL_STREAM", "")
		}
		level := new(slog.LevelVar)
		level.Set(slog.LevelWarn)
		log := slog.New(NewHandler(f, level))
		log.Info("hidden")
		log.Warn("shown")
		level.Set(slog.LevelDebug) // a reload lowers the level
		log.Debug("now shown")
		got := contents(t, f)
		if strings.Contains(got, "hidden") || !strings.Contains(got, "msg=shown") || !strings.Contains(got, `msg="now shown"`) {
			t.Errorf("journal=%v: level not honoured:\n%s", journal, got)
		}
	}
}

func TestJournalAttrsAndGroups(t *testing.T) {
	f, js := stream(t)
	t.Setenv("JOURNAL_STREAM", js)
	log := slog.New(NewHandler(f, slog.LevelInfo)).With("node", "worker-1").WithGroup("svc")
	log.Error("no IP left", "name", "default/web", slog.Time("time", slogTime))
	want := `<3>level=ERROR msg="no IP left" node=worker-1 svc.name=default/web svc.time=2026-01-02T03:04:05.000Z` + "\n"
	if got := contents(t, f); got != want {
		t.Errorf("want %q\ngot  %q", want, got)
	}
}

// Lines written from many goroutines and derived handlers stay whole and
// each keeps its own prefix.
func TestJournalConcurrentLines(t *testing.T) {
	f, js := stream(t)
	t.Setenv("JOURNAL_STREAM", js)
	base := slog.New(NewHandler(f, slog.LevelDebug))
	var wg sync.WaitGroup
	for g := range 8 {
		log := base.With("g", g)
		wg.Go(func() {
			for i := range 200 {
				if i%2 == 0 {
					log.Info("tick", "i", i)
				} else {
					log.Error("tock", "i", i)
				}
			}
		})
	}
	wg.Wait()
	line := regexp.MustCompile(`^(<6>level=INFO msg=tick|<3>level=ERROR msg=tock) g=\d i=\d+$`)
	lines := strings.Split(strings.TrimSuffix(contents(t, f), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("want %d lines, got %d", 8*200, len(lines))
	}
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Fatalf("mangled line %q", l)
		}
	}
}

var slogTime = mustTime("2026-01-02T03:04:05Z")

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
