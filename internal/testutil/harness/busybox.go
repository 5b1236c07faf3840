package harness

import (
	"archive/tar"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BusyboxPath is where Debian's busybox-static package installs its
// statically linked busybox.
const BusyboxPath = "/bin/busybox"

// BusyboxPackage is the Debian package that provides BusyboxPath.
const BusyboxPackage = "busybox-static"

// Users and groups of the busybox image. Tests of USER and of file
// ownership rely on them.
const (
	BusyboxPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`
	BusyboxGroup = `root:x:0:
daemon:x:1:
staff:x:50:
app:x:1000:
nogroup:x:65534:
`
)

// CheckBusybox returns a *MissingError unless BusyboxPath is a statically
// linked executable (a dynamically linked busybox, from Debian's busybox
// package, would not run inside an image that has no libc).
func CheckBusybox() error {
	if err := NeedExecutable(BusyboxPath, BusyboxPackage); err != nil {
		return err
	}
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		return &MissingError{Path: BusyboxPath, Package: BusyboxPackage, Detail: "not an ELF file: " + err.Error()}
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return &MissingError{Path: BusyboxPath, Package: BusyboxPackage,
				Detail: "dynamically linked (from Debian's busybox package?); busybox-static replaces it"}
		}
	}
	return nil
}

// BusyboxFiles returns the file tree of the busybox image: /bin/busybox with
// a symlink per applet (to /bin/busybox), /etc/passwd (root, daemon, app
// 1000:1000, nobody), /etc/group (root, daemon, staff 50, app 1000,
// nogroup), /tmp and /var/tmp 1777, /root 0700, /home/app owned by app, and
// the empty mount points /proc, /sys, /dev.
func BusyboxFiles() ([]File, error) {
	if err := CheckBusybox(); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", BusyboxPath, err)
	}
	files := []File{
		Dir("bin", 0o755), Dir("sbin", 0o755), Dir("usr/bin", 0o755), Dir("usr/sbin", 0o755),
		Dir("etc", 0o755), Dir("home", 0o755), Dir("proc", 0o555), Dir("sys", 0o555), Dir("dev", 0o755),
		Dir("root", 0o700), Dir("tmp", 0o1777), Dir("var/tmp", 0o1777),
		{Path: "home/app", Type: tar.TypeDir, Mode: 0o755, UID: 1000, GID: 1000},
		{Path: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Data: bin},
		Reg("etc/passwd", 0o644, BusyboxPasswd),
		Reg("etc/group", 0o644, BusyboxGroup),
	}
	for _, a := range strings.Fields(string(out)) {
		a = strings.TrimPrefix(a, "/")
		if a == "bin/busybox" || a == "" {
			continue
		}
		files = append(files, Symlink(a, "/bin/busybox"))
	}
	return files, nil
}

// Busybox returns a one-layer OCI image of BusyboxFiles with Env PATH and
// Cmd ["sh"], for the host's architecture. Its digest depends only on the
// installed busybox-static.
func Busybox() (v1.Image, error) {
	files, err := BusyboxFiles()
	if err != nil {
		return nil, err
	}
	b, err := LayerTar(files)
	if err != nil {
		return nil, err
	}
	layer, err := LayerFromTar(b)
	if err != nil {
		return nil, err
	}
	cfg := v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: v1.Config{
			Env: []string{"PATH=" + DefaultPath},
			Cmd: []string{"sh"},
		},
	}
	return NewImage(cfg, []v1.Layer{layer}, []string{"busybox-static /bin/busybox from Debian, applet symlinks"})
}
