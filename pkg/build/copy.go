package build

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/dockerfile"
)

// copyRequest is a COPY or ADD after expansion.
type copyRequest struct {
	name     string // COPY or ADD
	sd       instructions.SourcesAndDest
	from     string
	chown    string
	chmod    string
	link     bool
	exclude  []string
	parents  bool
	add      bool
	unpack   bool
	checksum string
	loc      []parser.Range
}

// opener opens an entry's content.
type opener func() (io.ReadCloser, error)

// copyEntry is one tar entry of the layer being made.
type copyEntry struct {
	dest string // absolute clean path in the image
	hdr  *tar.Header
	open opener
	// treePath is set for content that comes from an image's layers; it is
	// spooled before the layer is written.
	treePath string
	// keepOwner keeps the header's uid/gid for a context source (entries
	// ADD extracted from an archive keep the archive's owners).
	keepOwner bool
	// ctxPath is the file a build-context entry is read from; stat is
	// what stat(2) said of it and digest is its content's sha256, when
	// known (copy_cache.go).
	ctxPath string
	stat    *cache.FileStat
	digest  string
}

// doCopy runs COPY and ADD: each source is copied in turn, as BuildKit
// does, against the stage's filesystem (copy_plan.go), and the changes
// become one layer.
func (s *stageState) doCopy(ctx context.Context, r copyRequest) error {
	defer s.cleanTemp()
	errf := func(format string, args ...any) error {
		return s.file.Errorf(r.loc, r.name+" "+format, args...)
	}
	plan := s.newCopyPlan(ctx, r.name)
	plan.keepOwners = r.from != ""
	if r.chown != "" {
		uid, gid, err := s.resolveOwner(ctx, r.chown)
		if err != nil {
			return errf("--chown=%s: %v", r.chown, err)
		}
		plan.owner = &[2]int{uid, gid}
	}
	if r.chmod != "" {
		f, err := parseChmod(r.chmod)
		if err != nil {
			return errf("--chmod=%s: %v", r.chmod, err)
		}
		plan.chmod = f
		if n, err := strconv.ParseUint(r.chmod, 8, 32); err == nil {
			plan.dirMode = int64(n)
		}
	}
	exclude, err := dockerfile.NewMatcher("--exclude", r.exclude)
	if err != nil {
		return errf("%v", err)
	}
	dest := s.copyDest(r.sd.DestPath)
	if dest == "" {
		return errf("no destination")
	}

	var fsys sourceFS
	if r.from != "" {
		if fsys, err = s.fromSource(ctx, r.from); err != nil {
			return s.file.Wrap(r.loc, err)
		}
	} else if len(r.sd.SourcePaths) > 0 {
		if s.b.ctxSrc == nil {
			if !(r.add && allURLs(r.sd.SourcePaths)) {
				return errf("%s: there is no build context (the build was given none)", strings.Join(r.sd.SourcePaths, " "))
			}
		} else {
			fsys = &contextFS{c: s.b.ctxSrc}
		}
	}
	for _, src := range r.sd.SourcePaths {
		if err := s.copyPath(ctx, plan, r, fsys, exclude, src, dest); err != nil {
			return errf("%s: %v", src, err)
		}
	}
	for _, sc := range r.sd.SourceContents {
		data := sc.Data
		f := &copyEntry{
			hdr:  &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: s.b.entryTime()},
			open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil },
		}
		if err := plan.copyFile(dest, path.Base("/"+sc.Path), f); err != nil {
			return errf("<<%s: %v", sc.Path, err)
		}
	}
	entries := plan.list()
	if err := s.spoolTreeContent(r.from, entries); err != nil {
		return errf("%v", err)
	}
	if err := s.addLayerCached(ctx, entries, copyCreatedBy(r), true, func(err error) error { return errf("%v", err) }); err != nil {
		return err
	}
	plan.commit()
	return nil
}

// copyDest is a COPY/ADD destination as BuildKit sees it: absolute (a
// relative one is below WORKDIR), clean, with a trailing slash kept ("dir/"
// and "dir/." end with one; "." alone is the working directory itself).
func (s *stageState) copyDest(raw string) string {
	if raw == "" {
		return ""
	}
	p := raw
	if !path.IsAbs(p) {
		p = path.Join("/", s.cfg.Config.WorkingDir, p)
	}
	p = path.Clean(p)
	if p != "/" && (strings.HasSuffix(raw, "/") || strings.HasSuffix(raw, "/.")) {
		p += "/"
	}
	return p
}

// copyFile copies one file-like source (a URL download, a heredoc) named
// name to dest, as BuildKit's copy of a single file does.
func (p *copyPlan) copyFile(dest, name string, f *copyEntry) error {
	dst, err := p.prepareDest(dest)
	if err != nil {
		return err
	}
	return p.copyInto(dst, copySource{name: name, hdr: f.hdr, file: f})
}

// copyPath copies one source path (or URL, or pattern) of a COPY or ADD.
// A pattern that matches nothing copies nothing (BuildKit allows empty
// wildcards); a path that does not exist is an error.
func (s *stageState) copyPath(ctx context.Context, plan *copyPlan, r copyRequest, fsys sourceFS, exclude *dockerfile.Matcher, src, dest string) error {
	if r.add && isURL(src) {
		e, name, err := s.download(ctx, src, r.checksum)
		if err != nil {
			return err
		}
		return plan.copyFile(dest, name, e)
	}
	if r.add && isGitURL(src) {
		return fmt.Errorf("git sources are not supported")
	}
	clean, err := cleanSource(src)
	if err != nil {
		return err
	}
	found, err := fsys.match(clean)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		if hasGlob(clean) {
			s.b.opts.Progress.Warnf(s.stageTag(), "%s %s: no source files match the pattern in the %s", r.name, src, fsys.describe())
			return nil
		}
		return fmt.Errorf("not found in the %s%s", fsys.describe(), fsys.notFoundHint())
	}
	if r.parents {
		return s.copyParents(plan, fsys, exclude, found, dest)
	}
	dst, err := plan.prepareDest(dest)
	if err != nil {
		return err
	}
	for _, p := range found {
		name := path.Base("/" + p)
		if !hasGlob(clean) {
			name = path.Base("/" + clean)
		}
		followed, err := fsys.follow(p)
		if err != nil {
			return err
		}
		hdr, err := fsys.stat(followed)
		if err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeDir {
			if ex, err := exclude.Excluded(name); err != nil {
				return err
			} else if ex && len(r.exclude) > 0 {
				continue
			}
		}
		if r.add && r.unpack && r.from == "" && hdr.Typeflag == tar.TypeReg {
			ok, err := s.unpackArchive(plan, fsys.open(followed), src, dest)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		}
		if err := plan.copyInto(dst, s.sourceOf(fsys, exclude, followed, name, hdr)); err != nil {
			return err
		}
	}
	return nil
}

// sourceOf describes the source at path p of fsys (symlinks followed).
func (s *stageState) sourceOf(fsys sourceFS, exclude *dockerfile.Matcher, p, name string, hdr *tar.Header) copySource {
	tp := ""
	if _, isTree := fsys.(*treeFS); isTree {
		tp = p
	}
	src := copySource{name: name, hdr: hdr}
	ctxPath := func(string) string { return "" }
	walkStat := func(*tar.Header) *cache.FileStat { return nil }
	if cf, ok := fsys.(*contextFS); ok {
		ctxPath = cf.c.abs
		walkStat = func(h *tar.Header) *cache.FileStat {
			if v, ok := cf.stats.LoadAndDelete(h); ok {
				st := v.(cache.FileStat)
				return &st
			}
			return nil
		}
	}
	if hdr.Typeflag != tar.TypeDir {
		src.file = &copyEntry{hdr: hdr, open: fsys.open(p), treePath: tp, ctxPath: ctxPath(p)}
		return src
	}
	src.walk = func(fn func(string, *copyEntry) error) error {
		return fsys.walk(p, exclude, func(rel string, h *tar.Header, open opener, treePath string) error {
			return fn(rel, &copyEntry{hdr: h, open: open, treePath: treePath, ctxPath: ctxPath(joinRel(p, rel)), stat: walkStat(h)})
		})
	}
	return src
}

// copyParents is COPY --parents: each match keeps its path below the
// destination, its parent directories taking the source's metadata where
// they are created.
func (s *stageState) copyParents(plan *copyPlan, fsys sourceFS, exclude *dockerfile.Matcher, found []string, dest string) error {
	if !strings.HasSuffix(dest, "/") {
		dest += "/"
	}
	dst, err := plan.prepareDest(dest)
	if err != nil {
		return err
	}
	for _, p := range found {
		rel := ""
		for _, c := range strings.Split(path.Dir("/" + p)[1:], "/") {
			if c == "" {
				continue
			}
			rel = joinRel(rel, c)
			h, err := fsys.stat(rel)
			if err != nil {
				return err
			}
			if err := plan.copyChild(dst, rel, &copyEntry{hdr: h}); err != nil {
				return err
			}
		}
		followed, err := fsys.follow(p)
		if err != nil {
			return err
		}
		hdr, err := fsys.stat(followed)
		if err != nil {
			return err
		}
		src := s.sourceOf(fsys, exclude, followed, path.Base("/"+p), hdr)
		if hdr.Typeflag != tar.TypeDir {
			if err := plan.copyChild(dst, p, src.file); err != nil {
				return err
			}
			continue
		}
		if err := plan.copyChild(dst, p, &copyEntry{hdr: hdr}); err != nil {
			return err
		}
		if err := src.walk(func(r string, e *copyEntry) error { return plan.copyChild(dst, joinRel(p, r), e) }); err != nil {
			return err
		}
	}
	return nil
}

func copyCreatedBy(r copyRequest) string {
	var b strings.Builder
	b.WriteString(r.name)
	if r.from != "" {
		b.WriteString(" --from=" + r.from)
	}
	if r.chown != "" {
		b.WriteString(" --chown=" + r.chown)
	}
	if r.chmod != "" {
		b.WriteString(" --chmod=" + r.chmod)
	}
	if r.link {
		b.WriteString(" --link")
	}
	if r.parents {
		b.WriteString(" --parents")
	}
	for _, e := range r.exclude {
		b.WriteString(" --exclude=" + e)
	}
	for _, s := range r.sd.SourcePaths {
		b.WriteString(" " + s)
	}
	for _, sc := range r.sd.SourceContents {
		b.WriteString(" <<" + sc.Path)
	}
	b.WriteString(" " + r.sd.DestPath)
	return b.String()
}

func cloneHeader(h *tar.Header) *tar.Header {
	c := *h
	if h.PAXRecords != nil {
		c.PAXRecords = make(map[string]string, len(h.PAXRecords))
		for k, v := range h.PAXRecords {
			c.PAXRecords[k] = v
		}
	}
	return &c
}

func dirHeader(p string, mode int64, uid, gid int, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: mode, Uid: uid, Gid: gid, ModTime: mtime}
}

// parseChmod parses --chmod: octal ("755", "0644") or symbolic
// ("u+x,go-w", "a=r"). The returned function maps an entry's mode.
func parseChmod(s string) (func(int64, byte) int64, error) {
	if n, err := strconv.ParseUint(s, 8, 32); err == nil {
		if n > 0o7777 {
			return nil, fmt.Errorf("mode out of range")
		}
		return func(int64, byte) int64 { return int64(n) }, nil
	}
	type clause struct {
		who  int64
		op   byte
		perm int64
		x    bool // X: execute only for dirs or already-executable files
	}
	var clauses []clause
	for _, part := range strings.Split(s, ",") {
		i := 0
		var who int64
		for i < len(part) && strings.IndexByte("ugoa", part[i]) >= 0 {
			switch part[i] {
			case 'u':
				who |= 0o4700
			case 'g':
				who |= 0o2070
			case 'o':
				who |= 0o1007
			case 'a':
				who |= 0o7777
			}
			i++
		}
		if who == 0 {
			who = 0o7777
		}
		if i >= len(part) || strings.IndexByte("+-=", part[i]) < 0 {
			return nil, fmt.Errorf("invalid mode %q: want octal (0755) or symbolic (u+x,go-w)", s)
		}
		c := clause{who: who, op: part[i]}
		for _, r := range part[i+1:] {
			switch r {
			case 'r':
				c.perm |= 0o444
			case 'w':
				c.perm |= 0o222
			case 'x':
				c.perm |= 0o111
			case 'X':
				c.x = true
			case 's':
				c.perm |= 0o6000
			case 't':
				c.perm |= 0o1000
			default:
				return nil, fmt.Errorf("invalid mode %q: unknown permission %q", s, r)
			}
		}
		clauses = append(clauses, c)
	}
	return func(mode int64, typ byte) int64 {
		m := mode & 0o7777
		for _, c := range clauses {
			perm := c.perm
			if c.x && (typ == tar.TypeDir || m&0o111 != 0) {
				perm |= 0o111
			}
			perm &= c.who
			switch c.op {
			case '+':
				m |= perm
			case '-':
				m &^= perm
			case '=':
				m = m&^(c.who&0o777) | perm
			}
		}
		return mode&^0o7777 | m
	}, nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func isGitURL(s string) bool {
	return strings.HasPrefix(s, "git@") || strings.HasPrefix(s, "git://") || strings.HasSuffix(s, ".git") && isURL(s)
}

func allURLs(srcs []string) bool {
	for _, s := range srcs {
		if !isURL(s) {
			return false
		}
	}
	return true
}

// sourceFS is where COPY reads from: the build context or an image.
type sourceFS interface {
	// match expands a cleaned source path or pattern to paths whose
	// directories are resolved ("" is the root); nothing found gives an
	// empty list.
	match(src string) ([]string, error)
	// follow resolves symlinks in a matched path, the last one's too.
	follow(p string) (string, error)
	// stat describes a matched path (symlinks at the top already followed).
	stat(p string) (*tar.Header, error)
	// walk calls fn for everything below directory p, parents first, in
	// sorted order, with paths relative to p. Hardlinks come as TypeLink
	// headers whose Linkname is relative to p.
	walk(p string, exclude *dockerfile.Matcher, fn func(rel string, hdr *tar.Header, open opener, treePath string) error) error
	open(p string) opener
	describe() string
	notFoundHint() string
}

// contextFS reads the build context.
type contextFS struct {
	c *contextSource
	// stats are the stat keys of the regular files walk gave, by their
	// header: the step's table of context digests is looked up with
	// them (statContext), without a second lstat of each file.
	stats sync.Map
}

func (f *contextFS) describe() string { return "build context" }

func (f *contextFS) notFoundHint() string {
	if f.c.ignoreFile != "" {
		return " (or excluded by " + path.Base(f.c.ignoreFile) + ")"
	}
	return ""
}

func (f *contextFS) match(src string) ([]string, error) {
	if hasGlob(src) {
		return f.c.glob(src)
	}
	p, err := f.c.resolve(src, true)
	if err != nil {
		return nil, err
	}
	if ex, err := f.c.excluded(src); err != nil {
		return nil, err
	} else if ex && !f.c.matcher.MayIncludeBelow(src) {
		return nil, nil
	}
	if _, err := os.Lstat(f.c.abs(p)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return []string{p}, nil
}

func (f *contextFS) follow(p string) (string, error) { return f.c.resolve(p, true) }

func (f *contextFS) stat(p string) (*tar.Header, error) {
	fi, err := os.Lstat(f.c.abs(p))
	if err != nil {
		return nil, err
	}
	return fileHeader(fi, "")
}

func fileHeader(fi fs.FileInfo, link string) (*tar.Header, error) {
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, err
	}
	h.Uname, h.Gname = "", ""
	h.Uid, h.Gid = 0, 0
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	h.Format = tar.FormatPAX
	return h, nil
}

func (f *contextFS) open(p string) opener {
	abs := f.c.abs(p)
	return func() (io.ReadCloser, error) { return os.Open(abs) }
}

func (f *contextFS) walk(root string, exclude *dockerfile.Matcher, fn func(string, *tar.Header, opener, string) error) error {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		ents, err := os.ReadDir(f.c.abs(dir))
		if err != nil {
			return err
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			p := joinRel(dir, e.Name())
			r := joinRel(rel, e.Name())
			ignored, err := f.c.excluded(p)
			if err != nil {
				return err
			}
			excluded, err := exclude.Excluded(r)
			if err != nil {
				return err
			}
			fi, err := os.Lstat(f.c.abs(p))
			if err != nil {
				return err
			}
			if excluded {
				continue
			}
			if ignored {
				if fi.IsDir() && f.c.matcher.MayIncludeBelow(p) {
					if err := walk(p, r); err != nil {
						return err
					}
				}
				continue
			}
			link := ""
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				if link, err = os.Readlink(f.c.abs(p)); err != nil {
					return err
				}
			case fi.Mode()&(fs.ModeSocket|fs.ModeNamedPipe|fs.ModeDevice|fs.ModeCharDevice) != 0:
				continue // not content a layer can carry from a context
			}
			h, err := fileHeader(fi, link)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
				key := inode{uint64(st.Dev), st.Ino}
				if first, ok := seen[key]; ok {
					h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
					if err := fn(r, h, nil, ""); err != nil {
						return err
					}
					continue
				}
				seen[key] = r
			}
			if fi.Mode().IsRegular() {
				if st, ok := cache.StatOf(fi); ok {
					f.stats.Store(h, st)
				}
			}
			if err := fn(r, h, f.open(p), ""); err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(p, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root, "")
}
