package build

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
)

// addLayer writes entries as one new layer into the store (compressed,
// hashed and counted in a single pass) and appends it to the stage.
func (s *stageState) addLayer(entries []*copyEntry, createdBy string) error {
	defer s.cleanTemp()
	// Sorted and de-duplicated (the last entry for a path wins), parents
	// before children.
	byDest := map[string]*copyEntry{}
	for _, e := range entries {
		byDest[e.dest] = e
	}
	sorted := make([]*copyEntry, 0, len(byDest))
	for _, e := range byDest {
		if e.dest == "/" {
			continue
		}
		sorted = append(sorted, e)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].dest < sorted[j].dest })

	st := s.b.opts.Store
	bw, err := st.NewBlobWriter()
	if err != nil {
		return err
	}
	defer bw.Abort()
	info, err := archive.WriteLayer(bw, s.b.opts.Compression, archive.TarOptions{Timestamp: s.b.opts.Timestamp}, func(tw *archive.TarWriter) error {
		for _, e := range sorted {
			h := cloneHeader(e.hdr)
			h.Name = strings.TrimPrefix(e.dest, "/")
			if h.Typeflag == tar.TypeLink {
				h.Linkname = strings.TrimPrefix(h.Linkname, "/")
			}
			if h.Typeflag != tar.TypeReg {
				h.Size = 0
			}
			if h.Typeflag == tar.TypeSymlink {
				h.Mode = 0o777 // what Linux reports for every symlink
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if h.Typeflag != tar.TypeReg || h.Size == 0 {
				continue
			}
			if e.open == nil {
				return fmt.Errorf("%s: no content", e.dest)
			}
			r, err := e.open()
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, io.LimitReader(r, h.Size))
			r.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", e.dest, err)
			}
			if n != h.Size {
				return fmt.Errorf("%s: changed while being copied (%d bytes expected, %d read)", e.dest, h.Size, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := bw.Commit(info.Digest); err != nil {
		return err
	}
	layer, err := st.Layer(v1.Descriptor{
		MediaType: s.b.opts.Compression.MediaType(s.b.opts.Format == FormatOCI),
		Size:      info.Size,
		Digest:    info.Digest,
	}, info.DiffID)
	if err != nil {
		return err
	}
	s.layers = append(s.layers, layer)
	for _, e := range sorted {
		s.known.add(e.dest, e.hdr)
		if e.dest == "/etc/passwd" || e.dest == "/etc/group" {
			s.users = nil
		}
	}
	s.history(createdBy, false)
	return nil
}

func (s *stageState) cleanTemp() {
	for _, d := range s.tempDirs {
		os.RemoveAll(d)
	}
	s.tempDirs = nil
}
