// Command extract applies layer tars to a new directory with kiln's
// extractor (pkg/archive.Extract), for the unpack rows of bench/compare.sh:
// it is what kiln does to unpack a layer, without the registry, the
// decompression and the sandbox helper around it.
//
//	extract [-chown] [-workers N] [-sync] [-cpuprofile F] DIR TAR...
//
// DIR must not exist. Each TAR (uncompressed, or "-" for stdin) is
// applied in order; the time taken is printed in seconds. -workers sets
// archive.ExtractOptions.Workers (0: one per CPU, -1: none, every file in
// order), -sync starts each file's writeback as it is written and ends
// each layer with a syncfs of DIR's filesystem, as the sandbox's unpacking
// does before a layer is published.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/kiln-build/kiln/pkg/archive"
)

func main() {
	chown := flag.Bool("chown", false, "apply the owners of the entries")
	prof := flag.String("cpuprofile", "", "write a CPU profile to this file")
	workers := flag.Int("workers", 0, "goroutines writing files (0: one per CPU, -1: none)")
	sync := flag.Bool("sync", false, "syncfs after each layer")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: extract [-chown] [-workers N] [-sync] [-cpuprofile F] DIR TAR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 2 {
		flag.Usage()
		os.Exit(2)
	}
	dir := flag.Arg(0)
	if err := os.Mkdir(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "extract:", err)
		os.Exit(1)
	}
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			fmt.Fprintln(os.Stderr, "extract:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "extract:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	for _, name := range flag.Args()[1:] {
		if err := apply(dir, name, archive.ExtractOptions{Chown: *chown, Workers: *workers, WriteBack: *sync, OnSkip: func(string, string) {}}, *sync); err != nil {
			fmt.Fprintln(os.Stderr, "extract:", err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
}

func apply(dir, name string, opts archive.ExtractOptions, sync bool) error {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	if err := archive.Extract(bufio.NewReaderSize(r, 1<<20), dir, opts); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	return archive.SyncFS(dir)
}
