package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/l2lb/l2lb/cmd/l2lbd/internal/migrate"
	"github.com/l2lb/l2lb/config"
)

const importSummary = `Turns the objects of the load balancer you migrate from, as "kubectl get -o yaml"
prints them (lists or multi-document files), into a commented l2lbd.yaml on stdout:
  --from openelb   Eips (layer2 ones; BGP and VIP Eips are skipped)
  --from metallb   IPAddressPools, with the L2Advertisements that announce them
Whatever it cannot express is reported on stderr. Exit status 0 when the result
passes "l2lbd check", 1 when it does not (it is printed anyway, to edit), 2 on errors.`

func cmdImport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("l2lbd import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the system the objects come from: openelb or metallb")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: l2lbd import --from openelb|metallb FILE...\n\n%s\n\nFlags:\n", importSummary)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *from != "openelb" && *from != "metallb" {
		fmt.Fprintf(stderr, "l2lbd import: --from %q: want openelb or metallb\n", *from)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "l2lbd import: name at least one FILE (kubectl get -o yaml output; - for stdin)")
		return 2
	}
	var objs []migrate.Object
	var names []string
	for _, file := range fs.Args() {
		data, err := readInput(file)
		if err != nil {
			fmt.Fprintf(stderr, "l2lbd import: %v\n", err)
			return 2
		}
		name := file
		if file == "-" {
			name = "<stdin>"
		}
		names = append(names, name)
		o, err := migrate.Read(name, data)
		if err != nil {
			fmt.Fprintf(stderr, "l2lbd import: %v\n", err)
			return 2
		}
		objs = append(objs, o...)
	}
	var res *migrate.Result
	var err error
	if *from == "openelb" {
		res, err = migrate.FromOpenELB(names, objs)
	} else {
		res, err = migrate.FromMetalLB(names, objs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "l2lbd import: %v\n", err)
		return 2
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	out := res.Render()
	fmt.Fprint(stdout, out)
	// The same parser as check: what is printed must be a valid file.
	if _, err := config.Parse("<import output>", []byte(out), "import"); err != nil {
		for _, p := range config.Problems(err) {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintln(stderr, "l2lbd import: the result does not pass l2lbd check; edit it before use")
		return 1
	}
	if len(res.Pools) == 0 {
		fmt.Fprintln(stderr, "l2lbd import: no Layer 2 pool found in the input")
	}
	return 0
}

// readInput reads a file, or stdin for "-", bounded like a config file.
func readInput(file string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, 64<<20+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(data) > 64<<20 {
		return nil, fmt.Errorf("%s: larger than 64 MiB", file)
	}
	return data, nil
}
