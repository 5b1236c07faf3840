// Command mkrootfs writes a deterministic tar of executables taken from an
// unpacked Debian root (dpkg-deb -x of the packages that ship them) and
// exactly the shared objects they need: the ELF interpreter and the
// DT_NEEDED closure, found in the root's library directories, with the
// symlinks on the way kept as symlinks. The release build ADDs the tar
// into kiln's scratch-based image.
//
//	mkrootfs -root DIR -out FILE.tar [-mtime N] [-cap PATH=CAP[,CAP]]... \
//	         [-applets PATH=NAME,NAME...] PATH...
//
// -cap gives a file the capabilities (security.capability, permitted and
// effective) instead of a setuid bit: newuidmap and newgidmap work as a
// non-root user in a container whose runtime ignores setuid (no_new_privs)
// only that way. Setuid and setgid bits are always cleared. -applets adds
// symlinks NAME -> PATH in PATH's directory (busybox). Every entry is owned
// by root, with the given mtime (default 0).
package main

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// capBits are the capabilities -cap knows (linux/capability.h numbers).
var capBits = map[string]uint{"cap_chown": 0, "cap_dac_override": 1, "cap_fowner": 3, "cap_setgid": 6, "cap_setuid": 7}

type entry struct {
	hdr  *tar.Header
	src  string // host path of a regular file's content
	caps uint64
}

type builder struct {
	root    string
	entries map[string]*entry
}

func main() {
	var root, out string
	var mtime int64
	var caps, applets multiFlag
	flag.StringVar(&root, "root", "", "unpacked Debian root to take files from")
	flag.StringVar(&out, "out", "", "tar file to write")
	flag.Int64Var(&mtime, "mtime", 0, "mtime of every entry (seconds since the epoch)")
	flag.Var(&caps, "cap", "PATH=CAP[,CAP]: file capabilities for PATH (repeatable)")
	flag.Var(&applets, "applets", "PATH=NAME,...: symlinks NAME -> PATH beside it (repeatable)")
	flag.Parse()
	if root == "" || out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mkrootfs -root DIR -out FILE.tar [-mtime N] [-cap PATH=CAP] [-applets PATH=NAMES] PATH...")
		os.Exit(2)
	}
	if err := run(root, out, time.Unix(mtime, 0), caps, applets, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mkrootfs:", err)
		os.Exit(1)
	}
}

func run(root, out string, mtime time.Time, caps, applets, paths []string) error {
	b := &builder{root: root, entries: map[string]*entry{}}
	for _, p := range paths {
		if err := b.addELF(p); err != nil {
			return err
		}
	}
	for _, c := range caps {
		p, list, ok := strings.Cut(c, "=")
		e := b.entries[path.Clean(p)]
		if !ok || e == nil || e.hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("-cap %s: not a regular file among the outputs", c)
		}
		for _, n := range strings.Split(list, ",") {
			bit, ok := capBits[strings.ToLower(n)]
			if !ok {
				return fmt.Errorf("-cap %s: unknown capability %q", c, n)
			}
			e.caps |= 1 << bit
		}
	}
	for _, a := range applets {
		p, names, ok := strings.Cut(a, "=")
		if !ok || b.entries[path.Clean(p)] == nil {
			return fmt.Errorf("-applets %s: %s is not among the outputs", a, p)
		}
		for _, n := range strings.Split(names, ",") {
			if n == "" || strings.Contains(n, "/") {
				return fmt.Errorf("-applets %s: bad name %q", a, n)
			}
			link := path.Join(path.Dir(path.Clean(p)), n)
			if b.entries[link] == nil {
				b.add(link, &tar.Header{Typeflag: tar.TypeSymlink, Linkname: path.Base(p)}, "")
			}
		}
	}
	return b.write(out, mtime)
}

// add records an entry and its parent directories.
func (b *builder) add(p string, h *tar.Header, src string) {
	for d := path.Dir(p); d != "/" && b.entries[d] == nil; d = path.Dir(d) {
		b.entries[d] = &entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}}
	}
	b.entries[p] = &entry{hdr: h, src: src}
}

// resolve follows p inside the root, recording each symlink met on the
// way, and returns the final path (inside the root) of a regular file.
func (b *builder) resolve(p string) (string, error) {
	p = path.Clean("/" + p)
	for hops := 0; hops < 40; hops++ {
		cur := "/"
		rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
		moved := false
		for i, c := range rest {
			next := path.Join(cur, c)
			fi, err := os.Lstat(filepath.Join(b.root, next))
			if err != nil {
				return "", fmt.Errorf("%s: %w", p, err)
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				target, err := os.Readlink(filepath.Join(b.root, next))
				if err != nil {
					return "", err
				}
				b.add(next, &tar.Header{Typeflag: tar.TypeSymlink, Linkname: target}, "")
				if !path.IsAbs(target) {
					target = path.Join(cur, target)
				}
				p = path.Join(append([]string{target}, rest[i+1:]...)...)
				moved = true
				break
			}
			cur = next
		}
		if !moved {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

// addELF adds an executable or library and, recursively, its interpreter
// and the libraries it needs.
func (b *builder) addELF(p string) error {
	real, err := b.resolve(p)
	if err != nil {
		return err
	}
	if e := b.entries[real]; e != nil && e.hdr.Typeflag == tar.TypeReg {
		return nil
	}
	host := filepath.Join(b.root, real)
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", p)
	}
	mode := int64(fi.Mode().Perm()) // setuid and setgid bits dropped
	b.add(real, &tar.Header{Typeflag: tar.TypeReg, Mode: mode, Size: fi.Size()}, host)
	f, err := elf.Open(host)
	if err != nil {
		return nil // not an ELF file (a script, data): nothing more to add
	}
	defer f.Close()
	var deps []string
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			data, err := io.ReadAll(prog.Open())
			if err != nil {
				return fmt.Errorf("%s: PT_INTERP: %w", p, err)
			}
			deps = append(deps, strings.TrimRight(string(data), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: DT_NEEDED: %w", p, err)
	}
	for _, l := range libs {
		found, err := b.findLib(l, f.Machine)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", p, l, err)
		}
		deps = append(deps, found)
	}
	for _, d := range deps {
		if err := b.addELF(d); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) findLib(name string, m elf.Machine) (string, error) {
	triplet := map[elf.Machine]string{elf.EM_X86_64: "x86_64-linux-gnu", elf.EM_AARCH64: "aarch64-linux-gnu"}[m]
	for _, d := range []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/lib", "/usr/lib"} {
		p := path.Join(d, name)
		if _, err := os.Stat(filepath.Join(b.root, p)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found under %s", b.root)
}

// capXattr is struct vfs_cap_data revision 2: permitted and effective.
func capXattr(bits uint64) string {
	var buf [20]byte
	binary.LittleEndian.PutUint32(buf[0:], 0x02000000|0x000001) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(buf[4:], uint32(bits))        // permitted, low word
	binary.LittleEndian.PutUint32(buf[12:], uint32(bits>>32))   // permitted, high word
	return string(buf[:])
}

func (b *builder) write(out string, mtime time.Time) error {
	names := make([]string, 0, len(b.entries))
	for n := range b.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	for _, n := range names {
		e := b.entries[n]
		h := *e.hdr
		h.Name = strings.TrimPrefix(n, "/")
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeSymlink {
			h.Mode = 0o777
		}
		h.ModTime, h.Uid, h.Gid, h.Format = mtime, 0, 0, tar.FormatPAX
		if e.caps != 0 {
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capXattr(e.caps)}
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if e.src != "" {
			if err := copyFile(tw, e.src); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
