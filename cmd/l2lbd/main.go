// Command l2lbd is the l2lb host daemon: it gives Kubernetes LoadBalancer
// Services addresses from the pools in /etc/l2lb/l2lbd.yaml and answers ARP and
// NDP for them from exactly one node. This file only parses the command line
// and is the only place that exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon"
)

// version is set by the Makefile from git describe.
var version = ""

const usage = `l2lbd — Layer 2 load balancer for Kubernetes LoadBalancer Services

Usage:
  l2lbd run     [--config PATH]   run the daemon (as systemd does)
  l2lbd check   [--config PATH]   validate the configuration file and summarize it
  l2lbd status  [--config PATH] [--kubeconfig PATH] [-o table|json]
                                  show the cluster as l2lb sees it (exit 1: needs attention)
  l2lbd import  --from openelb|metallb FILE...
                                  turn OpenELB Eips or MetalLB pools into an l2lbd.yaml
  l2lbd version                   print the version

Run "l2lbd COMMAND --help" for a command's flags.
The configuration file is documented in l2lbd.yaml(5) and the annotated example.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "import":
		return cmdImport(args[1:], stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "l2lbd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// flags parses a subcommand's flags; ok is false when the caller should exit
// with code.
func flags(name, summary string, args []string, stdout, stderr io.Writer, define func(*flag.FlagSet)) (code int, ok bool) {
	fs := flag.NewFlagSet("l2lbd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	define(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: l2lbd %s\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0, false
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "l2lbd %s: unexpected argument %q\n", name, fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// configFlag defines --config, the file every subcommand but version reads.
func configFlag(path *string) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(path, "config", config.DefaultPath, "configuration file")
	}
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	var path, state string
	define := func(fs *flag.FlagSet) {
		configFlag(&path)(fs)
		// systemd's StateDirectory= sets STATE_DIRECTORY (colon-separated
		// when the unit names several; the unit names one).
		dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":")
		fs.StringVar(&state, "state-dir", dir, "directory for the last good copy of the configuration, which a start with a broken file runs on; empty for none (default $STATE_DIRECTORY)")
	}
	code, ok := flags("run [--config PATH] [--state-dir DIR]", "Runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the configuration.", args, stdout, stderr, define)
	if !ok {
		return code
	}
	// SIGHUP is caught from the very start so that an early reload request
	// never kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	oneProcessor()
	hostname, _ := os.Hostname()
	err := daemon.Run(ctx, daemon.Options{
		ConfigPath: path,
		Hostname:   hostname,
		Version:    versionString(),
		Stderr:     stderr,
		Reload:     hup,
		StateDir:   state,
	})
	if err != nil {
		fmt.Fprintf(stderr, "l2lbd: %v\n", err)
		return 1
	}
	return 0
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	if code, ok := flags("version", "Prints the version.", args, stdout, stderr, func(*flag.FlagSet) {}); !ok {
		return code
	}
	fmt.Fprintf(stdout, "l2lbd %s\n", versionString())
	return 0
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// oneProcessor runs the daemon's goroutines on one processor unless
// GOMAXPROCS says otherwise (a positive number; the runtime ignores any
// other value, and so does this). Its work comes as small events (a peer's
// renewal, a frame, a Service change), and with a second processor idle
// every event also wakes a thread to look for work there, which it does
// not find: at idle that was a third of the daemon's context switches
// (BENCHMARKS.md, idle CPU). One processor is ample: a daemon's busiest
// moment, a 5,000-Service cold start, takes a fraction of a core.
func oneProcessor() {
	if !processorsSet(os.Getenv("GOMAXPROCS")) {
		runtime.GOMAXPROCS(1)
	}
}

// processorsSet reports whether the runtime takes env, the value of
// GOMAXPROCS, as the number of processors, parsing it as the runtime
// does.
func processorsSet(env string) bool {
	n, err := strconv.ParseInt(env, 10, 32)
	return err == nil && n > 0
}
