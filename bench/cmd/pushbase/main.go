// Command pushbase makes kiln's test base images from Debian packages
// (without any image builder; see internal/testutil/harness) and pushes
// them to a registry:
//
//	pushbase -registry 127.0.0.1:5000 [-images debian,busybox] [-json FILE]
//
//	debian   REGISTRY/library/debian:bookworm   mmdebstrap minbase bookworm
//	busybox  REGISTRY/library/busybox:latest    Debian's busybox-static
//
// It prints REF@DIGEST per image; -json also writes, per image, the
// reference, manifest digest, config digest and layer digests (what a
// benchmark needs to tell base bytes from the rest). The Debian layer is
// cached in $KILN_TEST_CACHE (default /var/tmp/kiln-test-cache).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// pushed describes one pushed image.
type pushed struct {
	Ref    string   `json:"ref"`
	Digest string   `json:"digest"`
	Config string   `json:"config"`
	Layers []string `json:"layers"`
}

func main() {
	registry := flag.String("registry", "", "registry host:port to push to (plain HTTP on loopback)")
	images := flag.String("images", "debian", "comma-separated images to push: debian, busybox")
	jsonOut := flag.String("json", "", "also write the pushed images' digests as JSON to this file")
	flag.Parse()
	if *registry == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: pushbase -registry HOST:PORT [-images debian,busybox] [-json FILE]")
		os.Exit(2)
	}
	var out []pushed
	for _, name := range strings.Split(*images, ",") {
		var (
			img v1.Image
			ref string
			err error
		)
		switch strings.TrimSpace(name) {
		case "debian":
			img, err = harness.Debian(harness.CacheDir(), os.Stderr)
			ref = *registry + "/library/debian:bookworm"
		case "busybox":
			img, err = harness.Busybox()
			ref = *registry + "/library/busybox:latest"
		default:
			err = fmt.Errorf("unknown image %q (want debian or busybox)", name)
		}
		if err != nil {
			fatal(err)
		}
		if err := harness.Push(ref, img); err != nil {
			fatal(err)
		}
		p, err := describe(ref, img)
		if err != nil {
			fatal(err)
		}
		fmt.Printf("%s@%s\n", p.Ref, p.Digest)
		out = append(out, p)
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			fatal(err)
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fatal(err)
		}
	}
}

func describe(ref string, img v1.Image) (pushed, error) {
	p := pushed{Ref: ref}
	d, err := img.Digest()
	if err != nil {
		return p, err
	}
	c, err := img.ConfigName()
	if err != nil {
		return p, err
	}
	m, err := img.Manifest()
	if err != nil {
		return p, err
	}
	p.Digest, p.Config = d.String(), c.String()
	for _, l := range m.Layers {
		p.Layers = append(p.Layers, l.Digest.String())
	}
	return p, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "pushbase:", err)
	os.Exit(1)
}
