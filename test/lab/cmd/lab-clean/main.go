// Command lab-clean removes what crashed test-lab runs left behind: processes,
// network namespaces and links named l2lb-<id>-*, bridges l2b<id>, and
// $TMPDIR/l2lb-lab-<id> directories. It takes the lab lock first, so a running
// lab is never touched: it waits for it (bounded by -wait) instead.
//
//	go run ./test/lab/cmd/lab-clean    (make lab-clean)
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/l2lb/l2lb/test/lab"
)

func main() {
	wait := flag.Duration("wait", 10*time.Second, "how long to wait for a running lab to end")
	flag.Parse()
	log.SetFlags(0)
	if err := lab.Clean(*wait, log.Printf); err != nil {
		fmt.Fprintf(os.Stderr, "lab-clean: %v\n", err)
		os.Exit(1)
	}
}
