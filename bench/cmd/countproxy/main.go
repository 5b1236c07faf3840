// Command countproxy runs a reverse proxy on 127.0.0.1 in front of a
// plain-HTTP registry and counts the response bytes of blob downloads
// (GET /v2/*/blobs/<digest>) per digest:
//
//	countproxy -target 127.0.0.1:5000 -addr-file F -out COUNTS.json
//
// It writes its "127.0.0.1:PORT" to -addr-file (and stdout) once it
// listens, and on SIGTERM or SIGINT writes the counts as JSON to -out (or
// stdout) and exits: {"blobs": {"sha256:...": bytes}, "gets": {...},
// "requests": ["GET /v2/... 200", ...]}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

func main() {
	target := flag.String("target", "", "registry host:port to forward to")
	addrFile := flag.String("addr-file", "", "write the proxy's host:port here once it listens")
	out := flag.String("out", "", "write the counts (JSON) here on exit (default stdout)")
	flag.Parse()
	if *target == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: countproxy -target HOST:PORT [-addr-file F] [-out F]")
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	p, err := harness.NewCountingProxy(*target)
	if err != nil {
		fatal(err)
	}
	fmt.Println(p.Addr)
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(p.Addr+"\n"), 0o644); err != nil {
			fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			fatal(err)
		}
	}
	<-sig
	_ = p.Close()
	gets := map[string]int{}
	for _, d := range p.Counts.Digests() {
		gets[d] = p.Counts.BlobGets(d)
	}
	b, err := json.MarshalIndent(struct {
		Blobs    map[string]int64 `json:"blobs"`
		Gets     map[string]int   `json:"gets"`
		Requests []string         `json:"requests"`
	}{p.Counts.Blobs(), gets, p.Counts.Requests()}, "", "  ")
	if err != nil {
		fatal(err)
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "countproxy:", err)
	os.Exit(1)
}
