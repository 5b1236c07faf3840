package build

import (
	"archive/tar"
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// copyPlan is the set of changes one COPY, ADD or WORKDIR step makes,
// worked out the way BuildKit's file operations make them (tonistiigi/
// fsutil's copy and MkdirAll over containerd's fs.RootPath) against the
// stage's filesystem: this step's entries over this build's layers over
// the base image. Questions about the base are answered from its layers'
// path indexes (lookupPath), never assumed.
type copyPlan struct {
	s   *stageState
	ctx context.Context
	// why names the step for the log when a base layer must be indexed.
	why string
	// owner is --chown (or USER for WORKDIR): the owner of the files
	// copied and of the directories the step creates. nil: sources keep
	// theirs (root for the build context) and created directories are
	// root's.
	owner *[2]int
	// dirMode is the mode of directories the step creates: 0755, or a
	// numeric --chmod (as BuildKit since fsutil 183e7fb).
	dirMode int64
	// chmod is --chmod, applied to what is copied.
	chmod func(int64, byte) int64
	// keepOwners keeps the sources' owners (COPY --from).
	keepOwners bool
	mtime      time.Time

	entries map[string]*copyEntry
	// fresh are the directories the step created where nothing was:
	// nothing lies below them but what the step puts there.
	fresh map[string]bool
}

func (s *stageState) newCopyPlan(ctx context.Context, why string) *copyPlan {
	return &copyPlan{
		s: s, ctx: ctx, why: why, dirMode: 0o755, mtime: s.b.entryTime(),
		entries: map[string]*copyEntry{}, fresh: map[string]bool{},
	}
}

// maxLinks bounds symlink resolution as containerd's fs.RootPath does.
const maxLinks = 255

// lstat returns what is at the clean absolute path p, following no
// symlinks; nil when nothing is there.
func (p *copyPlan) lstat(q string) (*tar.Header, error) {
	if q == "/" {
		return rootDirHeader(), nil
	}
	if e, ok := p.entries[q]; ok {
		return e.hdr, nil
	}
	for d := path.Dir(q); ; d = path.Dir(d) {
		if p.fresh[d] {
			return nil, nil
		}
		if d == "/" {
			break
		}
	}
	return p.s.lookupPath(p.ctx, q, p.why+" needs to know what "+q+" is")
}

// rootPath resolves q inside the root as containerd's fs.RootPath does:
// ".." is lexical and never climbs above the root, every symlink on the
// way is followed (the last component's too; absolute targets from the
// root, relative ones from the link's directory), and a missing component
// ends nothing: the rest is taken as it stands.
func (p *copyPlan) rootPath(q string) (string, error) {
	rest := splitAbs(q)
	cur := "/"
	hops := 0
	for len(rest) > 0 {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		h, err := p.lstat(next)
		if err != nil {
			return "", err
		}
		if h == nil || h.Typeflag != tar.TypeSymlink {
			cur = next
			continue
		}
		if hops++; hops > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", q)
		}
		target := h.Linkname
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		rest = append(splitAbs(target), rest...)
		cur = "/"
	}
	return cur, nil
}

// splitAbs splits a path, made clean and absolute, into its components.
func splitAbs(q string) []string {
	c := path.Clean("/" + q)
	if c == "/" {
		return nil
	}
	return strings.Split(c[1:], "/")
}

// stat is lstat after following symlinks.
func (p *copyPlan) stat(q string) (*tar.Header, error) {
	r, err := p.rootPath(q)
	if err != nil {
		return nil, err
	}
	return p.lstat(r)
}

// mkdirAll creates directory q and its missing parents as fsutil's
// MkdirAll does: mode mode, owned by uid:gid; what exists (a directory, or
// a symlink to one) is left as it is.
func (p *copyPlan) mkdirAll(q string, mode int64, uid, gid int) error {
	q = path.Clean(q)
	h, err := p.stat(q)
	if err != nil {
		return err
	}
	if h != nil {
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		return fmt.Errorf("mkdir %s: not a directory", q)
	}
	if parent := path.Dir(q); parent != "/" && parent != q {
		if err := p.mkdirAll(parent, mode, uid, gid); err != nil {
			return err
		}
	}
	if h, err = p.lstat(q); err != nil {
		return err
	}
	if h != nil {
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		return fmt.Errorf("mkdir %s: file exists", q)
	}
	p.entries[q] = &copyEntry{dest: q, hdr: dirHeader(q, mode, uid, gid, p.mtime)}
	p.fresh[q] = true
	return nil
}

// mkdirOwned is mkdirAll with the step's owner and directory mode.
func (p *copyPlan) mkdirOwned(q string) error {
	uid, gid := 0, 0
	if p.owner != nil {
		uid, gid = p.owner[0], p.owner[1]
	}
	return p.mkdirAll(q, p.dirMode, uid, gid)
}

// put adds a copied entry with the step's owner and mode applied.
func (p *copyPlan) put(e *copyEntry) {
	e.hdr = cloneHeader(e.hdr)
	if !p.keepOwners && !e.keepOwner {
		e.hdr.Uid, e.hdr.Gid = 0, 0
	}
	if p.owner != nil {
		e.hdr.Uid, e.hdr.Gid = p.owner[0], p.owner[1]
	}
	if p.chmod != nil && e.hdr.Typeflag != tar.TypeSymlink && e.hdr.Typeflag != tar.TypeLink {
		e.hdr.Mode = p.chmod(e.hdr.Mode, e.hdr.Typeflag)
	}
	p.entries[e.dest] = e
}

// copySource is one source of a COPY or ADD: name is what a file is called
// in a destination directory (the source's own name, a symlink's included),
// hdr describes it after following symlinks.
type copySource struct {
	name string
	hdr  *tar.Header
	// file is the entry of a source that is not a directory (its dest is
	// set by copyInto); walk lists a directory's contents.
	file *copyEntry
	walk func(fn func(rel string, e *copyEntry) error) error
}

// prepareDest is the start of fsutil's Copy for destination dest (absolute,
// a trailing slash kept): the destination directory (dest with a trailing
// slash) or dest's parent is created, then dest is resolved.
func (p *copyPlan) prepareDest(dest string) (string, error) {
	ensure := dest
	if i := strings.LastIndexByte(dest, '/'); i >= 0 && dest[i+1:] != "" && dest[i+1:] != "." {
		ensure = dest[:i+1]
	}
	r, err := p.rootPath(ensure)
	if err != nil {
		return "", err
	}
	if err := p.mkdirOwned(r); err != nil {
		return "", err
	}
	return p.rootPath(dest)
}

// copyInto copies src to the resolved destination dst (fsutil's
// prepareTargetDir and copy): a file into dst when dst is a directory,
// else as dst; a directory's contents into dst, created if missing.
func (p *copyPlan) copyInto(dst string, src copySource) error {
	fiDest, err := p.stat(dst)
	if err != nil {
		return err
	}
	srcDir := src.hdr.Typeflag == tar.TypeDir
	if !srcDir && fiDest != nil && fiDest.Typeflag == tar.TypeDir {
		dst = path.Join(dst, src.name)
	}
	target := path.Dir(dst)
	if srcDir && fiDest == nil {
		target = dst
	}
	if err := p.mkdirOwned(target); err != nil {
		return err
	}
	th, err := p.lstat(dst)
	if err != nil {
		return err
	}
	if !srcDir {
		if th != nil && th.Typeflag == tar.TypeDir {
			return fmt.Errorf("cannot replace to directory %s with file", dst)
		}
		e := *src.file
		e.dest = dst
		if e.hdr.Typeflag == tar.TypeLink {
			e.hdr = cloneHeader(e.hdr)
			e.hdr.Linkname = path.Join(dst, e.hdr.Linkname)
		}
		p.put(&e)
		return nil
	}
	if th == nil {
		return fmt.Errorf("cannot copy to %s: the directory was not created", dst)
	}
	if th.Typeflag != tar.TypeDir {
		return fmt.Errorf("cannot copy to non-directory: %s", dst)
	}
	return src.walk(func(rel string, e *copyEntry) error {
		return p.copyChild(dst, rel, e)
	})
}

// copyChild copies an entry found below a source directory to dst/rel: a
// directory merges with one that exists (taking the source's metadata), a
// file replaces what is there unless that is a directory.
func (p *copyPlan) copyChild(dst, rel string, e *copyEntry) error {
	t := path.Join(dst, rel)
	th, err := p.lstat(t)
	if err != nil {
		return err
	}
	if e.hdr.Typeflag == tar.TypeDir {
		if th != nil && th.Typeflag != tar.TypeDir {
			return fmt.Errorf("cannot copy to non-directory: %s", t)
		}
		if th == nil {
			p.fresh[t] = true
		}
	} else if th != nil && th.Typeflag == tar.TypeDir {
		return fmt.Errorf("cannot replace to directory %s with file", t)
	}
	e.dest = t
	if e.hdr.Typeflag == tar.TypeLink {
		e.hdr = cloneHeader(e.hdr)
		e.hdr.Linkname = path.Join(dst, e.hdr.Linkname)
	}
	p.put(e)
	return nil
}

// list returns the plan's entries.
func (p *copyPlan) list() []*copyEntry {
	out := make([]*copyEntry, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, e)
	}
	return out
}

// commit records the directories the step created where nothing was:
// later steps need not ask the base about what lies below them.
func (p *copyPlan) commit() {
	for d := range p.fresh {
		if e, ok := p.entries[d]; ok && e.hdr.Typeflag == tar.TypeDir {
			p.s.known.opaque[d] = true
		}
	}
}

// workdirLayer makes WORKDIR's directory as BuildKit does (mkdir -p, owned
// by USER): the directories it creates get entries, what exists (symlinks
// followed) is left alone (its layer is then empty).
func (s *stageState) workdirLayer(ctx context.Context, p, createdBy string, loc []parser.Range) error {
	errf := func(err error) error { return s.file.Errorf(loc, "%s: %v", createdBy, err) }
	plan := s.newCopyPlan(ctx, createdBy)
	plan.mtime = s.b.start // the build's time, as BuildKit (workdir_time.go)
	uid, gid := 0, 0
	if s.cfg.Config.User != "" {
		var err error
		if uid, gid, err = s.resolveOwner(ctx, s.cfg.Config.User); err != nil {
			return errf(err)
		}
	}
	r, err := plan.rootPath(p)
	if err != nil {
		return errf(err)
	}
	if err := plan.mkdirAll(r, 0o755, uid, gid); err != nil {
		return errf(err)
	}
	// BuildKit commits WORKDIR's mkdir as a layer even when the directory
	// was there (an empty one).
	if err := s.addWorkdirLayer(ctx, plan.list(), createdBy, func(err error) error { return errf(err) }); err != nil {
		return err
	}
	plan.commit()
	return nil
}
