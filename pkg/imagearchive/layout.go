package imagearchive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/oci"
)

const (
	layoutFile = "oci-layout"
	indexFile  = "index.json"
	// layoutWorkers is how many layers WriteLayout copies at once.
	layoutWorkers = 3
	// A layout is meant to be read by others: 0755 directories, 0644
	// files (kiln's store, private to its user, uses 0700 and 0600).
	layoutFileMode = 0o644
	layoutDirMode  = 0o755
)

// WriteLayout writes items into the OCI image layout directory dir,
// creating it or adding to it. Each item with a ref gets an index.json
// entry annotated with both oci.AnnotationRefName and
// oci.AnnotationContainerdName set to the ref (an existing entry for that
// ref is replaced); an item without a ref gets an unnamed entry (unless
// one for its digest is there). Blobs the layout holds are not written
// again; the others are written to a temporary name, verified against
// their digest, fsynced and renamed into place, and index.json is
// replaced atomically, so the directory is a valid layout at every
// moment. Writers to one directory take turns (an flock on it); temporary
// files a killed writer left are removed by the next.
func WriteLayout(dir string, items []Item) error {
	if err := checkItems(items); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	p, entries, err := ociPlan(items)
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, layoutDirMode); err != nil {
		return fmt.Errorf("creating OCI layout %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	defer unlock()
	removeTemps(dir)
	removeTemps(blobDir)
	if err := initLayout(dir); err != nil {
		return err
	}
	if err := p.writeFiles(dir); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	if err := mergeIndex(dir, entries); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive flock on the directory dir; the returned
// function releases it.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// removeTemps removes the temporary files of writers to dir: with the
// directory's lock held, any there belongs to a writer that died. They
// are atomicfile's (.NAME.tmp-*) and older kiln's (.kiln-tmp-*).
func removeTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, ".") && (strings.Contains(n, ".tmp-") || strings.HasPrefix(n, ".kiln-tmp-")) {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// initLayout creates or checks dir's oci-layout file, and creates an
// empty index.json when there is none.
func initLayout(dir string) error {
	lp := filepath.Join(dir, layoutFile)
	data, err := os.ReadFile(lp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b, _ := oci.MarshalJSON(oci.ImageLayout{Version: oci.LayoutVersion})
		if err := atomicfile.WriteFile(lp, b, layoutFileMode); err != nil {
			return fmt.Errorf("writing %s: %w", lp, err)
		}
	case err != nil:
		return fmt.Errorf("reading %s: %w", lp, err)
	default:
		if err := oci.CheckLayout(lp, data); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, indexFile)); errors.Is(err, fs.ErrNotExist) {
		return writeIndex(dir, &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
	}
	return nil
}

// writeFiles writes the planned blobs dir lacks: small ones first, then
// the layers, a few at a time.
func (p *archivePlan) writeFiles(dir string) error {
	names := make([]string, 0, len(p.files))
	for n := range p.files {
		names = append(names, n)
	}
	sort.Strings(names)
	var g errgroup.Group
	g.SetLimit(layoutWorkers)
	for _, n := range names {
		b := p.files[n]
		path := filepath.Join(dir, filepath.FromSlash(n))
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			continue
		}
		if b.open == nil {
			if err := writeData(path, b); err != nil {
				g.Wait()
				return err
			}
			continue
		}
		g.Go(func() error {
			return atomicfile.Write(path, layoutFileMode, func(w io.Writer) error { return copyVerified(w, b) })
		})
	}
	return g.Wait()
}

// writeData writes a small planned blob, checking its digest.
func writeData(path string, b *archiveBlob) error {
	if got := oci.SHA256(b.data); b.digest.Algorithm == "sha256" && got != b.digest {
		return fmt.Errorf("blob %s: digest mismatch: content has %s", b.digest, got)
	}
	if err := atomicfile.WriteFile(path, b.data, layoutFileMode); err != nil {
		return fmt.Errorf("blob %s: %w", b.digest, err)
	}
	return nil
}

// mergeIndex adds entries to dir's index.json: a named entry replaces the
// one of the same ref, an unnamed one is added unless an unnamed entry for
// its digest is there. Named entries come first, sorted by ref.
func mergeIndex(dir string, entries []v1.Descriptor) error {
	ip := filepath.Join(dir, indexFile)
	data, err := os.ReadFile(ip)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ip, err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("parsing %s: %w", ip, err)
	}
	for _, e := range entries {
		if ref := oci.RefName(e); ref != "" {
			oci.RemoveRef(im, ref)
		} else if hasUnnamed(im, e.Digest) {
			continue
		}
		im.Manifests = append(im.Manifests, e)
	}
	oci.NormalizeIndex(im)
	return writeIndex(dir, im)
}

// hasUnnamed reports whether im has an unnamed entry for digest h.
func hasUnnamed(im *v1.IndexManifest, h v1.Hash) bool {
	for _, d := range im.Manifests {
		if d.Digest == h && oci.RefName(d) == "" {
			return true
		}
	}
	return false
}

// writeIndex replaces dir's index.json atomically.
func writeIndex(dir string, im *v1.IndexManifest) error {
	ip := filepath.Join(dir, indexFile)
	data, err := oci.MarshalJSON(im)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", ip, err)
	}
	if err := atomicfile.WriteFile(ip, data, layoutFileMode); err != nil {
		return fmt.Errorf("replacing %s: %w", ip, err)
	}
	return nil
}
