//go:build linux && (amd64 || arm64)

package ptrace

import (
	"bytes"
	"encoding/binary"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// argItem is an argv entry: an address in the tracee, or a new string.
type argItem struct {
	addr uint64
	s    string
	new  bool
}

// execve runs the program itself where the kernel would resolve guest
// paths on the host: the #! interpreter and the ELF interpreter.
func (c *call) execve(di, pi, ai int, follow bool) error {
	given, abs, ok, err := c.guestPath(di, pi)
	if err != nil || !ok {
		return err
	}
	argv, err := c.readArgv(arg(&c.r, ai))
	if err != nil {
		return err
	}
	rewritten := false
	prog := abs
	for depth := 0; ; depth++ {
		host, guest, err := c.tr.view.resolve(prog, follow)
		if err != nil {
			return err
		}
		follow = true
		head, mode, herr := readHead(host)
		if herr != nil || mode&unix.S_IFMT != unix.S_IFREG {
			// The kernel fails as it would have.
			return c.finishExec(host, nil, false, ai)
		}
		if mode&0o111 == 0 {
			return c.skip(-int64(unix.EACCES))
		}
		if bytes.HasPrefix(head, []byte("#!")) && depth < 4 {
			interp, opt := shebang(head)
			if interp == "" {
				return c.skip(-int64(unix.ENOEXEC))
			}
			name := given
			if depth > 0 {
				name = prog
			}
			nv := []argItem{{s: interp, new: true}}
			if opt != "" {
				nv = append(nv, argItem{s: opt, new: true})
			}
			nv = append(nv, argItem{s: name, new: true})
			if len(argv) > 1 {
				nv = append(nv, argv[1:]...)
			}
			argv, rewritten = nv, true
			if !strings.HasPrefix(interp, "/") {
				cwd, err := c.cwd()
				if err != nil {
					return err
				}
				interp = path.Join(cwd, interp)
			}
			prog = interp
			continue
		}
		interp := elfInterp(host, head)
		c.t.newExe = guest
		if interp == "" {
			return c.finishExec(host, argv, rewritten, ai)
		}
		ihost, _, err := c.tr.view.resolve(interp, true)
		if err != nil {
			return err
		}
		nv := []argItem{{s: interp, new: true}}
		if !strings.Contains(path.Base(interp), "musl") {
			a0 := argItem{s: guest, new: true}
			if len(argv) > 0 {
				a0 = argv[0]
			}
			nv = append(nv, argItem{s: "--argv0", new: true}, a0)
		}
		nv = append(nv, argItem{s: guest, new: true})
		if len(argv) > 1 {
			nv = append(nv, argv[1:]...)
		}
		return c.finishExec(ihost, nv, true, ai)
	}
}

// finishExec makes the call execve(host, argv, envp).
func (c *call) finishExec(host string, argv []argItem, rewritten bool, ai int) error {
	envp := arg(&c.r, ai+1)
	addr, err := c.putString(host)
	if err != nil {
		return err
	}
	argvAddr := arg(&c.r, ai)
	if rewritten {
		ptrs := make([]byte, 8*(len(argv)+1))
		for i, a := range argv {
			p := a.addr
			if a.new {
				if p, err = c.putString(a.s); err != nil {
					return err
				}
			}
			binary.NativeEndian.PutUint64(ptrs[8*i:], p)
		}
		if argvAddr, err = c.put(ptrs); err != nil {
			return err
		}
	}
	setSysno(&c.r, unix.SYS_EXECVE)
	setArg(&c.r, 0, addr)
	setArg(&c.r, 1, argvAddr)
	setArg(&c.r, 2, envp)
	c.changed = true
	return nil
}

// readArgv reads the argv array (its pointers).
func (c *call) readArgv(addr uint64) ([]argItem, error) {
	var out []argItem
	for addr != 0 && len(out) < 1<<16 {
		p, err := readU64(c.t.tid, addr+uint64(8*len(out)))
		if err != nil {
			return nil, unix.EFAULT
		}
		if p == 0 {
			return out, nil
		}
		out = append(out, argItem{addr: p})
	}
	return out, nil
}

// readHead reads the start of a file to execute.
func readHead(host string) ([]byte, uint32, error) {
	f, err := os.Open(host)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, 0, err
	}
	b := make([]byte, 256)
	n, _ := f.Read(b)
	return b[:n], st.Mode, nil
}

// shebang parses a #! line: the interpreter and its one optional
// argument (the rest of the line, as Linux does).
func shebang(head []byte) (string, string) {
	line := head[2:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	s := strings.TrimSpace(string(line))
	interp, opt, _ := strings.Cut(s, " ")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		interp, opt = s[:i], strings.TrimSpace(s[i+1:])
	}
	return interp, opt
}

// elfInterp returns the PT_INTERP of a 64-bit little-endian ELF file.
func elfInterp(host string, head []byte) string {
	if len(head) < 64 || !bytes.HasPrefix(head, []byte("\x7fELF")) || head[4] != 2 || head[5] != 1 {
		return ""
	}
	le := binary.LittleEndian
	phoff := le.Uint64(head[32:])
	phentsize := int(le.Uint16(head[54:]))
	phnum := int(le.Uint16(head[56:]))
	if phentsize < 56 || phnum == 0 || phnum > 512 {
		return ""
	}
	f, err := os.Open(host)
	if err != nil {
		return ""
	}
	defer f.Close()
	ph := make([]byte, phentsize*phnum)
	if _, err := f.ReadAt(ph, int64(phoff)); err != nil {
		return ""
	}
	for i := 0; i < phnum; i++ {
		p := ph[i*phentsize:]
		if le.Uint32(p) != 3 { // PT_INTERP
			continue
		}
		off, size := le.Uint64(p[8:]), le.Uint64(p[32:])
		if size == 0 || size > 4096 {
			return ""
		}
		b := make([]byte, size)
		if _, err := f.ReadAt(b, int64(off)); err != nil {
			return ""
		}
		return string(bytes.TrimRight(b, "\x00"))
	}
	return ""
}
