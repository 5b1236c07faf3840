package build

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-build/kiln/pkg/archive"
)

// unpackArchive is ADD of a local archive: when the source is a tar
// (plain or gzip, bzip2, xz, zstd compressed) its entries are written below
// dest, as BuildKit's unpack does: dest (symlinks followed) is created like
// a copy's destination, the archive's own "." entry is left out (dest
// keeps its metadata), directories over directories merge, other entries
// replace what is there, and parents the archive does not list are made
// 0755 and root's. Entries keep the archive's owners unless --chown.
func (s *stageState) unpackArchive(plan *copyPlan, open opener, name, dest string) (bool, error) {
	f, err := open()
	if err != nil {
		return false, err
	}
	defer f.Close()
	dr, _, err := archive.Decompress(f)
	if err != nil {
		return false, nil // not an archive we know: copied as a file
	}
	defer dr.Close()
	br := bufio.NewReaderSize(dr, 1<<16)
	head, err := br.Peek(512)
	if err != nil || !archive.IsTar(head) {
		return false, nil
	}
	root, err := plan.rootPath(dest)
	if err != nil {
		return false, err
	}
	if err := plan.mkdirOwned(root); err != nil {
		return false, err
	}
	dir, err := s.spoolDir()
	if err != nil {
		return false, err
	}
	tr := tar.NewReader(br)
	seen := map[string]bool{}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("reading archive %s: %w", name, err)
		}
		if err := s.unpackEntry(plan, tr, h, i, dir, name, root, seen); err != nil {
			return false, err
		}
	}
	return true, nil
}

// unpackEntry adds one archive entry below root.
func (s *stageState) unpackEntry(plan *copyPlan, tr *tar.Reader, h *tar.Header, i int, dir, name, root string, seen map[string]bool) error {
	rel := path.Clean("/" + h.Name)
	if rel == "/" {
		return nil
	}
	if strings.HasPrefix(path.Base(rel), archive.WhiteoutPrefix) {
		s.b.opts.Progress.Warnf("", "ADD %s: skipping whiteout entry %s", name, h.Name)
		return nil
	}
	// path.Clean("/"+name) already folds "..": an entry can never land
	// outside dest. Say so when an archive tried.
	if strings.Contains("/"+filepath.ToSlash(h.Name)+"/", "/../") {
		return fmt.Errorf("archive %s: entry %q points outside the destination", name, h.Name)
	}
	hc := cloneHeader(h)
	hc.Uname, hc.Gname = "", ""
	e := &copyEntry{dest: path.Join(root, rel), hdr: hc, keepOwner: true}
	switch h.Typeflag {
	case tar.TypeReg, 0 /* pre-POSIX regular file */ :
		hc.Typeflag = tar.TypeReg
		fn := filepath.Join(dir, fmt.Sprint(i))
		w, err := os.Create(fn)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Close()
			return fmt.Errorf("reading archive %s: %s: %w", name, h.Name, err)
		}
		if err := w.Close(); err != nil {
			return err
		}
		e.open = func() (io.ReadCloser, error) { return os.Open(fn) }
	case tar.TypeLink:
		target := path.Clean("/" + h.Linkname)
		if !seen[target] {
			return fmt.Errorf("archive %s: hardlink %s to %s, which is not earlier in the archive", name, h.Name, h.Linkname)
		}
		hc.Linkname = path.Join(root, target)
	case tar.TypeDir, tar.TypeSymlink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil // PAX globals and the like carry no file
	}
	seen[rel] = true
	if err := plan.mkdirAll(path.Dir(e.dest), 0o755, 0, 0); err != nil {
		return fmt.Errorf("archive %s: %s: %w", name, h.Name, err)
	}
	plan.put(e)
	return nil
}

// download fetches an ADD URL into a temporary file, checks --checksum, and
// returns its entry (mode 0600 and the Last-Modified time, as docker does)
// and its name in a destination directory (the URL's last path element).
func (s *stageState) download(ctx context.Context, rawURL, checksum string) (*copyEntry, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("invalid URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := s.b.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("download failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("download failed: %s", resp.Status)
	}
	dir, err := s.spoolDir()
	if err != nil {
		return nil, "", err
	}
	fn := filepath.Join(dir, "content")
	w, err := os.Create(fn)
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", fmt.Errorf("download failed: %w", err)
	}
	if checksum != "" {
		algo, want, ok := strings.Cut(checksum, ":")
		if !ok || algo != "sha256" {
			return nil, "", fmt.Errorf("--checksum=%s: want sha256:<hex>", checksum)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(want) {
			return nil, "", fmt.Errorf("checksum mismatch: want sha256:%s, got sha256:%s", want, got)
		}
	}
	mtime := time.Unix(0, 0).UTC()
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			mtime = t
		}
	}
	base := path.Base(u.Path)
	if base == "/" || base == "." || base == "" {
		base = "__unnamed__"
	}
	return &copyEntry{
		hdr:  &tar.Header{Typeflag: tar.TypeReg, Mode: 0o600, Size: n, ModTime: mtime},
		open: func() (io.ReadCloser, error) { return os.Open(fn) },
	}, base, nil
}
