package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// maxVerifyProblems bounds what a verification reports of one layer.
const maxVerifyProblems = 20

// VerifyUnpacked compares the unpacked layer directory dir (an overlay
// upper directory of the rootfs store) with the layer's tar r (read and
// checked against its diff ID by the caller): every entry of the tar must
// be in dir with its type, permissions, owners (where they are kept),
// content or link target, and dir must hold nothing else than the tar's
// entries, their parent directories and whiteouts. It returns what
// differs (nothing: the directory is the layer).
func (s *Sandbox) VerifyUnpacked(ctx context.Context, dir string, r io.Reader) ([]string, error) {
	h, ok := s.impl.(interface {
		exec(context.Context, *job, io.Reader, io.Writer, io.Writer) (*result, error)
	})
	if !ok || !s.Overlay() {
		return nil, fmt.Errorf("%w: %s mode keeps no unpacked layers", ErrUnavailable, s.Mode())
	}
	res, err := h.exec(ctx, &job{Kind: jobVerify, Dest: dir, Chown: !s.SingleMapping()}, r, nil, nil)
	if err != nil {
		return nil, err
	}
	return res.Notes, nil
}

// verifyJob is the helper's side of VerifyUnpacked: the tar on stdin,
// the directory j.Dest.
func verifyJob(j *job) (*result, error) {
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < maxVerifyProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	seen := map[string]bool{".": true}
	mark := func(p string) {
		for ; p != "." && p != "/" && !seen[p]; p = path.Dir(p) {
			seen[p] = true
		}
	}
	tr := tar.NewReader(os.Stdin)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the layer: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(path.Clean("/"+hdr.Name), "/"))
		if name == "." || name == "" {
			continue
		}
		base, parent := path.Base(name), path.Dir(name)
		if base == ".wh..wh..opq" {
			mark(parent)
			continue
		}
		if w, ok := strings.CutPrefix(base, ".wh."); ok {
			// A deletion: a 0:0 character device, or nothing where the
			// layers below had nothing.
			p := path.Join(parent, w)
			mark(p)
			if fi, err := os.Lstat(filepath.Join(j.Dest, p)); err == nil && !isWhiteout(fi) {
				bad("%s: a whiteout in the layer, %s here", p, fi.Mode().Type())
			}
			continue
		}
		mark(name)
		bad2 := verifyEntry(j, hdr, name, tr)
		for _, b := range bad2 {
			bad("%s", b)
		}
	}
	// Nothing else: no file the layer does not have.
	err := filepath.WalkDir(j.Dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(j.Dest, p)
		if seen[filepath.ToSlash(rel)] {
			return nil
		}
		if fi, err := d.Info(); err == nil && isWhiteout(fi) {
			return nil
		}
		bad("%s: not in the layer", rel)
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &result{Notes: problems}, nil
}

// verifyEntry compares one tar entry with its path in j.Dest.
func verifyEntry(j *job, hdr *tar.Header, name string, content io.Reader) []string {
	p := filepath.Join(j.Dest, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return []string{fmt.Sprintf("%s: missing (%v)", name, errors.Unwrap(err))}
	}
	var out []string
	want := map[byte]fs.FileMode{tar.TypeReg: 0, tar.TypeDir: fs.ModeDir, tar.TypeSymlink: fs.ModeSymlink,
		tar.TypeChar: fs.ModeDevice | fs.ModeCharDevice, tar.TypeBlock: fs.ModeDevice, tar.TypeFifo: fs.ModeNamedPipe, tar.TypeLink: 0}
	if t, ok := want[hdr.Typeflag]; ok && fi.Mode().Type() != t {
		return []string{fmt.Sprintf("%s: %v here, %v in the layer", name, fi.Mode().Type(), t)}
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeLink && st != nil {
		if got, w := int64(st.Mode&0o7777), hdr.Mode&0o7777; got != w {
			out = append(out, fmt.Sprintf("%s: mode %04o here, %04o in the layer", name, got, w))
		}
		if j.Chown && (int(st.Uid) != hdr.Uid || int(st.Gid) != hdr.Gid) {
			out = append(out, fmt.Sprintf("%s: owner %d:%d here, %d:%d in the layer", name, st.Uid, st.Gid, hdr.Uid, hdr.Gid))
		}
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if got, _ := os.Readlink(p); got != hdr.Linkname {
			out = append(out, fmt.Sprintf("%s: links to %q here, %q in the layer", name, got, hdr.Linkname))
		}
	case tar.TypeReg:
		if fi.Size() != hdr.Size {
			return append(out, fmt.Sprintf("%s: %d bytes here, %d in the layer", name, fi.Size(), hdr.Size))
		}
		want := sha256.New()
		if _, err := io.Copy(want, content); err != nil {
			return append(out, fmt.Sprintf("%s: reading the layer: %v", name, err))
		}
		if got, err := fileSHA256(p); err != nil || !bytes.Equal(got, want.Sum(nil)) {
			out = append(out, fmt.Sprintf("%s: content differs from the layer's", name))
		}
	}
	return out
}

func fileSHA256(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// isWhiteout reports an overlay whiteout: a 0:0 character device.
func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}
