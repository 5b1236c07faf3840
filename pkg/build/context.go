package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kiln-build/kiln/pkg/dockerfile"
)

// contextSource is the build context directory with its ignore rules. All
// paths inside are slash-separated, relative to the root, and can never
// leave it: symlinks are resolved as if the root were "/".
type contextSource struct {
	root       string
	ignoreFile string
	matcher    *dockerfile.Matcher
}

func openContext(dir, dockerfilePath string) (*contextSource, error) {
	if dir == "" {
		return nil, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", dir)
	}
	ign := dockerfile.IgnoreFile(abs, dockerfilePath)
	pats, err := dockerfile.LoadIgnore(ign)
	if err != nil {
		return nil, err
	}
	m, err := dockerfile.NewMatcher(ign, pats)
	if err != nil {
		return nil, err
	}
	return &contextSource{root: abs, ignoreFile: ign, matcher: m}, nil
}

// abs is the host path of a relative context path.
func (c *contextSource) abs(rel string) string {
	return filepath.Join(c.root, filepath.FromSlash(rel))
}

func (c *contextSource) excluded(rel string) (bool, error) {
	if rel == "" || rel == "." {
		return false, nil
	}
	return c.matcher.Excluded(rel)
}

// cleanSource cleans a COPY source path as BuildKit does: relative to the
// context root (a leading "/" means the root), ".." never climbing above
// it ("../a" is "a").
func cleanSource(src string) (string, error) {
	p := path.Clean("/" + filepath.ToSlash(src))
	return strings.TrimPrefix(p, "/"), nil
}

// resolve follows symlinks in rel inside the root. With followLast the last
// component is followed too. A missing component ends the walk: the path is
// returned as it stands.
func (c *contextSource) resolve(rel string, followLast bool) (string, error) {
	var parts []string
	if rel != "" {
		parts = strings.Split(rel, "/")
	}
	cur := ""
	hops := 0
	for i := 0; i < len(parts); i++ {
		comp := parts[i]
		if comp == "" || comp == "." {
			continue
		}
		if comp == ".." {
			cur = parentRel(cur)
			continue
		}
		next := joinRel(cur, comp)
		last := i == len(parts)-1
		st, err := os.Lstat(c.abs(next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return joinRel(next, strings.Join(parts[i+1:], "/")), nil
			}
			return "", err
		}
		if st.Mode()&fs.ModeSymlink != 0 && (!last || followLast) {
			hops++
			if hops > 255 {
				return "", fmt.Errorf("%s: too many levels of symbolic links", rel)
			}
			target, err := os.Readlink(c.abs(next))
			if err != nil {
				return "", err
			}
			target = filepath.ToSlash(target)
			base := cur
			if strings.HasPrefix(target, "/") {
				base = ""
			}
			rest := strings.Split(strings.Trim(target, "/"), "/")
			parts = append(rest, parts[i+1:]...)
			cur = base
			i = -1
			continue
		}
		cur = next
	}
	return cur, nil
}

func joinRel(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "/" + b
}

func parentRel(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return ""
}

func hasGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

// glob expands a pattern against the context, component by component,
// leaving out ignored paths. Matches are sorted.
func (c *contextSource) glob(pattern string) ([]string, error) {
	parts := strings.Split(pattern, "/")
	var out []string
	var walk func(dir string, i int) error
	walk = func(dir string, i int) error {
		if i == len(parts) {
			out = append(out, dir)
			return nil
		}
		comp := parts[i]
		if !hasGlob(comp) {
			next := joinRel(dir, comp)
			if i < len(parts)-1 {
				r, err := c.resolve(next, true)
				if err != nil {
					return err
				}
				next = r
			}
			if _, err := os.Lstat(c.abs(next)); err != nil {
				return nil
			}
			if ex, err := c.excluded(next); err != nil || ex {
				return err
			}
			return walk(next, i+1)
		}
		ents, err := os.ReadDir(c.abs(dir))
		if err != nil {
			return nil
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			ok, err := path.Match(comp, n)
			if err != nil {
				return fmt.Errorf("bad pattern %q: %w", pattern, err)
			}
			if !ok {
				continue
			}
			next := joinRel(dir, n)
			if ex, err := c.excluded(next); err != nil {
				return err
			} else if ex {
				continue
			}
			if i < len(parts)-1 {
				r, err := c.resolve(next, true)
				if err != nil {
					return err
				}
				next = r
			}
			if err := walk(next, i+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("", 0); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

// ReadContextFile reads the regular file rel (slash-separated) of the
// directory root the way a COPY source is read: symlinks, the last
// component's included, are resolved as if root were "/", so a link to a
// host file reads root's own copy of that path or nothing. It returns the
// content and the host path read. The Dockerfile of a context is read with
// it: a context (or a `build -` tar) whose Dockerfile is a symlink to
// /etc/shadow cannot read, or echo in an error, anything outside itself.
func ReadContextFile(root, rel string, maxSize int64) ([]byte, string, error) {
	c := &contextSource{root: root}
	clean, err := cleanSource(rel)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", rel, err)
	}
	res, err := c.resolve(clean, true)
	if err != nil {
		return nil, "", err
	}
	p := c.abs(res)
	f, err := os.Open(p)
	if err != nil {
		if res != clean {
			return nil, "", fmt.Errorf("%s is a symlink to %s inside the build context: %w", c.abs(clean), filepath.FromSlash(res), err)
		}
		return nil, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	if !st.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s is not a regular file", p)
	}
	if st.Size() > maxSize {
		return nil, "", fmt.Errorf("%s is %d bytes, more than the %d allowed", p, st.Size(), maxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, "", err
	}
	if int64(len(data)) > maxSize {
		return nil, "", fmt.Errorf("%s is more than the %d bytes allowed", p, maxSize)
	}
	return data, p, nil
}

// bindSource is the host path RUN --mount=type=bind shows for the context
// path rel (resolved, relative): as BuildKit, which only ever has the
// context without what the ignore file excludes, the mount shows none of
// the excluded files. When nothing at or below rel is excluded that is rel
// itself; otherwise a copy of the included entries, made in a directory
// from spool. An excluded rel is not found.
func (c *contextSource) bindSource(rel string, spool func() (string, error)) (string, error) {
	if ex, err := c.excluded(rel); err != nil {
		return "", err
	} else if ex && !c.matcher.MayIncludeBelow(rel) {
		return "", fmt.Errorf("%s: excluded by %s: %w", rel, filepath.Base(c.ignoreFile), fs.ErrNotExist)
	}
	src := c.abs(rel)
	st, err := os.Lstat(src)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return src, nil
	}
	errFound := errors.New("found")
	err = c.walkIncluded(rel, func(string, fs.DirEntry, bool) error { return errFound })
	if err == nil {
		return src, nil // nothing excluded
	}
	if !errors.Is(err, errFound) {
		return "", err
	}
	dir, err := spool()
	if err != nil {
		return "", err
	}
	view := filepath.Join(dir, "context")
	if err := os.Mkdir(view, st.Mode().Perm()|0o700); err != nil {
		return "", err
	}
	err = c.walkIncluded(rel, func(p string, d fs.DirEntry, excluded bool) error {
		if excluded {
			return nil
		}
		return copyContextEntry(c.abs(p), filepath.Join(view, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, rel), "/"))), d)
	})
	if err != nil {
		return "", fmt.Errorf("copying the included files of %s: %w", rel, err)
	}
	return view, nil
}

// walkIncluded walks the context directory rel, calling fn for every entry
// below it, with excluded set for the excluded ones that are reported
// (excluded directories whose entries may not be re-included are reported
// once and not entered). fn(excluded=true) returning an error stops the
// walk.
func (c *contextSource) walkIncluded(rel string, fn func(p string, d fs.DirEntry, excluded bool) error) error {
	return filepath.WalkDir(c.abs(rel), func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(c.root, hp)
		if err != nil {
			return err
		}
		p := filepath.ToSlash(r)
		if p == rel || (rel == "" && p == ".") {
			return nil
		}
		ex, err := c.excluded(p)
		if err != nil {
			return err
		}
		if ex {
			if err := fn(p, d, true); err != nil {
				return err
			}
			if d.IsDir() && !c.matcher.MayIncludeBelow(p) {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(p, d, false)
	})
}

// copyContextEntry copies one context entry (a directory, a regular file or
// a symlink; other kinds are left out) to dst, creating missing parents.
func copyContextEntry(src, dst string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case d.IsDir():
		if err := os.Mkdir(dst, info.Mode().Perm()|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	case d.Type()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case d.Type().IsRegular():
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return nil
}
