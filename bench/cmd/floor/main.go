// Command floor measures the floor of a COPY-only build: it writes each
// source (a directory or a file) as one layer with pkg/archive's WriteLayer
// (the same tar writer and compression kiln uses) to io.Discard, in one pass
// that also computes the diff ID and the digest, and prints them.
//
//	floor [-compression gzip|zstd|none] SOURCE...
//
// Each line of output is "SOURCE DIFFID DIGEST SIZE"; the last is the total
// size and time. Entries are written in lexical order with their modes and
// times, owned by root, like a COPY without --chown.
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/pkg/archive"
)

func main() {
	comp := flag.String("compression", "gzip", "layer compression: gzip, zstd or none")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: floor [-compression gzip|zstd|none] SOURCE...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	c, err := archive.ParseCompression(*comp)
	if err != nil {
		fatal(err)
	}
	start := time.Now()
	var total int64
	for _, src := range flag.Args() {
		info, err := archive.WriteLayer(io.Discard, c, archive.TarOptions{}, func(tw *archive.TarWriter) error {
			return addTree(tw, src)
		})
		if err != nil {
			fatal(fmt.Errorf("%s: %w", src, err))
		}
		total += info.Size
		fmt.Printf("%s %s %s %d\n", src, info.DiffID, info.Digest, info.Size)
	}
	fmt.Printf("total %d bytes %s in %.3fs\n", total, c, time.Since(start).Seconds())
}

// addTree writes src (a file, or a directory's contents, as COPY dir/ does)
// to tw.
func addTree(tw *archive.TarWriter, src string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	if !fi.IsDir() {
		return addEntry(tw, src, filepath.Base(src), fi, buf)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == src {
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return addEntry(tw, p, filepath.ToSlash(rel), fi, buf)
	})
}

// addEntry writes one entry named name for the file p, copying its content
// through buf.
func addEntry(tw *archive.TarWriter, p, name string, fi fs.FileInfo, buf []byte) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		l, err := os.Readlink(p)
		if err != nil {
			return err
		}
		link = l
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(onlyWriter{tw}, f, buf)
	return err
}

// onlyWriter hides io.ReaderFrom so that CopyBuffer uses our buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}
