package oracle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// contextTime is the mtime of every file and directory of a case's build
// context (and of its archives' entries), so that a COPY that keeps or
// loses a source's mtime shows in the tree.
var contextTime = time.Date(2022, 3, 4, 5, 6, 7, 0, time.UTC)

// A testCase is one testdata/NAME.txtar file: directives in the comment
// part, then the Dockerfile, the build context and files served over HTTP.
type testCase struct {
	name    string
	summary string   // first comment line
	args    []string // build flags for both builders (args:)
	// oracle is a stand-in Dockerfile for docker (section
	// oracle.Dockerfile) when dockerd 20.10's frontend lacks a feature:
	// kiln builds Dockerfile, docker builds this, the images must agree.
	oracle     string
	fail       string // both builders must fail (error:)
	ignoreTime string // why mtimes are not compared (ignore-mtime:)
	// ignoreHistory says why the history and layer count are not compared
	// (a stand-in needs more instructions than the case).
	ignoreHistory string
	stubs         []string // RUN --mount targets docker leaves (stub:)
	dockerfile    string
	files         map[string]string // context files (every other section)
	http          map[string]string // served under {{URL}} (sections http/NAME)
	directives    []directive       // context set-up, in file order
}

type directive struct{ key, value string }

// parseCase reads a txtar file: lines before the first "-- NAME --" are
// the comment (directives "key: value", other lines are description), and
// each "-- NAME --" line starts a file that runs to the next one.
func parseCase(name string, data []byte) (*testCase, error) {
	c := &testCase{name: name, files: map[string]string{}, http: map[string]string{}}
	lines := strings.SplitAfter(string(data), "\n")
	var cur *strings.Builder
	var curName string
	flush := func() error {
		if cur == nil {
			return nil
		}
		body := cur.String()
		switch {
		case curName == "Dockerfile":
			c.dockerfile = body
		case curName == "oracle.Dockerfile":
			c.oracle = body
		case strings.HasPrefix(curName, "http/"):
			c.http[strings.TrimPrefix(curName, "http/")] = body
		default:
			if _, dup := c.files[curName]; dup {
				return fmt.Errorf("file %s twice", curName)
			}
			c.files[curName] = body
		}
		return nil
	}
	for i, l := range lines {
		t := strings.TrimRight(l, "\n")
		if strings.HasPrefix(t, "-- ") && strings.HasSuffix(t, " --") && len(t) > 6 {
			if err := flush(); err != nil {
				return nil, err
			}
			curName, cur = strings.TrimSpace(t[3:len(t)-3]), &strings.Builder{}
			continue
		}
		if cur != nil {
			cur.WriteString(l)
			continue
		}
		if err := c.comment(t); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if c.dockerfile == "" {
		return nil, fmt.Errorf("no -- Dockerfile -- section")
	}
	if c.summary == "" {
		return nil, fmt.Errorf("no description line")
	}
	return c, nil
}

func (c *testCase) comment(line string) error {
	if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
		return nil
	}
	key, value, _ := strings.Cut(line, ": ")
	value = strings.TrimSpace(value)
	switch key {
	case "args":
		c.args = append(c.args, strings.Fields(value)...)
	case "error":
		c.fail = value
	case "ignore-mtime":
		c.ignoreTime = value
	case "ignore-history":
		c.ignoreHistory = value
	case "stub":
		c.stubs = append(c.stubs, strings.Fields(value)...)
	case "symlink", "hardlink", "chmod", "mkdir", "archive", "xattr", "chown", "gzip":
		c.directives = append(c.directives, directive{key, value})
	default:
		// Not a directive: the description.
		if c.summary == "" {
			c.summary = line
		}
	}
	return nil
}

// expand replaces the {{NAME}} placeholders of s (base image references,
// the case's URL) with vars.
func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

// writeContext makes the case's build context in dir: its files (mode
// 0644, parents 0755), then the directives in order, then every mtime set
// to contextTime.
func (c *testCase) writeContext(dir string, vars map[string]string) error {
	names := make([]string, 0, len(c.files))
	for n := range c.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := writeFile(filepath.Join(dir, n), []byte(expand(c.files[n], vars)), 0o644); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, "Dockerfile"), []byte(expand(c.dockerfile, vars)), 0o644); err != nil {
		return err
	}
	var remove []string
	for _, d := range c.directives {
		if err := d.apply(dir); err != nil {
			return fmt.Errorf("%s: %s: %w", d.key, d.value, err)
		}
		if d.key == "archive" || d.key == "gzip" {
			remove = append(remove, filepath.Join(dir, strings.Fields(d.value)[1]))
		}
	}
	// Archive sources leave the context once every archive is made.
	for _, p := range remove {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return setTimes(dir, contextTime)
}

func writeFile(p string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// apply runs one context directive:
//
//	symlink: NAME -> TARGET       a symbolic link
//	hardlink: NAME => EXISTING    a hard link
//	chmod: MODE NAME              octal mode
//	chown: UID:GID NAME           owner (lchown)
//	mkdir: NAME [MODE]            an (empty) directory
//	xattr: NAME KEY=VALUE         an extended attribute
//	archive: OUT SRCDIR [UID:GID] a tar of SRCDIR's contents (SRCDIR leaves
//	                              the context after the last directive),
//	                              compressed by OUT's extension
//	                              (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz,
//	                              .tar.zst), entries owned by UID:GID (0:0)
//	gzip: OUT SRC                 SRC gzipped to OUT (not a tar); SRC leaves
//	                              the context as an archive's source does
func (d directive) apply(dir string) error {
	f := strings.Fields(d.value)
	at := func(i int) string { return filepath.Join(dir, f[i]) }
	switch d.key {
	case "symlink", "hardlink":
		sep := map[string]string{"symlink": "->", "hardlink": "=>"}[d.key]
		if len(f) != 3 || f[1] != sep {
			return fmt.Errorf("want NAME %s TARGET", sep)
		}
		if err := os.MkdirAll(filepath.Dir(at(0)), 0o755); err != nil {
			return err
		}
		if d.key == "symlink" {
			return os.Symlink(f[2], at(0))
		}
		return os.Link(at(2), at(0))
	case "chmod":
		m, err := strconv.ParseUint(f[0], 8, 32)
		if err != nil || len(f) != 2 {
			return fmt.Errorf("want MODE NAME")
		}
		return unix.Chmod(at(1), uint32(m))
	case "chown":
		uid, gid, err := owner(f[0])
		if err != nil || len(f) != 2 {
			return fmt.Errorf("want UID:GID NAME")
		}
		return os.Lchown(at(1), uid, gid)
	case "mkdir":
		mode := uint64(0o755)
		if len(f) > 1 {
			mode, _ = strconv.ParseUint(f[1], 8, 32)
		}
		if err := os.MkdirAll(at(0), 0o755); err != nil {
			return err
		}
		return unix.Chmod(at(0), uint32(mode))
	case "xattr":
		k, v, _ := strings.Cut(f[1], "=")
		return unix.Lsetxattr(at(0), k, []byte(v), 0)
	case "archive":
		uid, gid := 0, 0
		if len(f) > 2 {
			var err error
			if uid, gid, err = owner(f[2]); err != nil {
				return err
			}
		}
		return makeArchive(at(0), at(1), uid, gid)
	case "gzip":
		b, err := os.ReadFile(at(1))
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.ModTime = contextTime
		zw.Write(b)
		zw.Close()
		return os.WriteFile(at(0), buf.Bytes(), 0o644)
	}
	return fmt.Errorf("unknown directive")
}

func owner(s string) (int, int, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad owner %q", s)
	}
	return uid, gid, nil
}

// makeArchive writes the contents of src as a tar (entries "./", "./a",
// …, dated contextTime, owned by uid:gid, hardlinks kept) to out,
// compressed by out's extension.
func makeArchive(out, src string, uid, gid int) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	inodes := map[uint64]string{}
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if rel == "." {
			h.Name = "./"
		} else if fi.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = uid, gid, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = contextTime, time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				inodes[st.Ino] = h.Name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	data := buf.Bytes()
	var tool []string
	switch {
	case strings.HasSuffix(out, ".tar"):
	case strings.HasSuffix(out, ".gz"), strings.HasSuffix(out, ".tgz"):
		tool = []string{"gzip", "-n", "-c"}
	case strings.HasSuffix(out, ".bz2"):
		tool = []string{"bzip2", "-c"}
	case strings.HasSuffix(out, ".xz"):
		tool = []string{"xz", "-c"}
	case strings.HasSuffix(out, ".zst"):
		tool = []string{"zstd", "-q", "-c"}
	default:
		return fmt.Errorf("unknown archive extension: %s", out)
	}
	if tool != nil {
		cmd := exec.Command(tool[0], tool[1:]...)
		cmd.Stdin = bytes.NewReader(data)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", tool[0], err, stderr.String())
		}
		data = b
	}
	return os.WriteFile(out, data, 0o644)
}

// setTimes sets the access and modification times of everything under
// dir (symlinks themselves, not their targets), deepest first.
func setTimes(dir string, t time.Time) error {
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %s: %w", paths[i], err)
		}
	}
	return nil
}
