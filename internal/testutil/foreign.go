package testutil

import (
	"archive/tar"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// ForeignDir is where .ci/deps puts foreign-architecture test binaries
// ($KILN_FOREIGN_DIR, default /usr/local/lib/kiln-test).
func ForeignDir() string {
	if d := os.Getenv("KILN_FOREIGN_DIR"); d != "" {
		return d
	}
	return "/usr/local/lib/kiln-test"
}

var (
	arm64Mu  sync.Mutex
	arm64Img v1.Image
)

// Arm64BusyboxImage returns the busybox image of BusyboxImage made with
// Debian's busybox-static for arm64 (fetched by .ci/deps to
// ForeignDir()/busybox.arm64): the same files, users and applet links,
// config linux/arm64/v8. Made once per test process.
func Arm64BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	arm64Mu.Lock()
	defer arm64Mu.Unlock()
	if arm64Img != nil {
		return arm64Img
	}
	bin := filepath.Join(ForeignDir(), "busybox.arm64")
	data, err := os.ReadFile(bin)
	if err != nil {
		Require(t, &harness.MissingError{Path: bin, Package: "busybox-static:arm64 (run .ci/deps as root)", Detail: err.Error()})
	}
	files, err := harness.BusyboxFiles()
	Require(t, err)
	for i := range files {
		if files[i].Path == "bin/busybox" {
			files[i] = harness.File{Path: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Data: data}
		}
	}
	b, err := harness.LayerTar(files)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := harness.LayerFromTar(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg := v1.ConfigFile{Architecture: "arm64", Variant: "v8", OS: "linux",
		Config: v1.Config{Env: []string{"PATH=" + harness.DefaultPath}, Cmd: []string{"sh"}}}
	img, err := harness.NewImage(cfg, []v1.Layer{layer}, []string{"busybox-static:arm64 /bin/busybox from Debian, applet symlinks"})
	if err != nil {
		t.Fatal(err)
	}
	arm64Img = img
	return img
}

const binfmtDir = "/proc/sys/fs/binfmt_misc"

// aarch64 executables, as qemu-user-static's binfmt entry matches them.
const (
	aarch64Magic = `\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00`
	aarch64Mask  = `\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`
)

// RequireArm64Emulation makes sure the kernel runs arm64 executables
// through qemu-user-static with the fix-binary flag (F), as a build's RUN
// steps need: a handler already registered is used; otherwise, as root, it
// mounts binfmt_misc if needed and registers kiln-test-aarch64 for
// /usr/bin/qemu-aarch64-static, and removes (and unmounts) only what it
// added when the test ends. Without root and without a handler the test is
// skipped (CI runs as root, so there it runs).
func RequireArm64Emulation(t testing.TB) {
	t.Helper()
	const qemu = "/usr/bin/qemu-aarch64-static"
	RequireProgram(t, qemu, "qemu-user-static")
	if _, err := os.Stat(filepath.Join(binfmtDir, "status")); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("binfmt_misc is not mounted at %s and registering qemu-aarch64 needs root", binfmtDir)
		}
		if err := unix.Mount("binfmt_misc", binfmtDir, "binfmt_misc", 0, ""); err != nil {
			t.Fatalf("mounting binfmt_misc at %s: %v", binfmtDir, err)
		}
		t.Cleanup(func() {
			// Only when nothing else was registered meanwhile.
			if entries, err := os.ReadDir(binfmtDir); err == nil && len(entries) <= 2 {
				_ = unix.Unmount(binfmtDir, 0)
			}
		})
	}
	if name := arm64Handler(); name != "" {
		t.Logf("arm64 executables run through binfmt_misc handler %s", name)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("no binfmt_misc handler with the fix-binary flag for arm64, and registering one needs root")
	}
	const name = "kiln-test-aarch64"
	line := fmt.Sprintf(":%s:M:0:%s:%s:%s:F", name, aarch64Magic, aarch64Mask, qemu)
	if err := os.WriteFile(filepath.Join(binfmtDir, "register"), []byte(line), 0); err != nil {
		if errors.Is(err, os.ErrExist) && arm64Handler() != "" {
			return // another test process registered it just now
		}
		t.Fatalf("registering %s with binfmt_misc: %v", name, err)
	}
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(binfmtDir, name), []byte("-1"), 0) })
	if arm64Handler() == "" {
		t.Fatalf("registered %s, but binfmt_misc does not list it as an enabled arm64 handler with flag F", name)
	}
}

// arm64Handler names an enabled binfmt_misc handler with flag F whose magic
// is the aarch64 ELF header's, or "".
func arm64Handler() string {
	entries, err := os.ReadDir(binfmtDir)
	if err != nil {
		return ""
	}
	want, _ := hex.DecodeString(strings.NewReplacer(`\x`, "").Replace(aarch64Magic))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(binfmtDir, e.Name()))
		if err != nil {
			continue
		}
		enabled, fix, match := false, false, false
		for _, l := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
			switch k {
			case "enabled":
				enabled = true
			case "flags:":
				fix = strings.Contains(v, "F")
			case "magic":
				m, _ := hex.DecodeString(v)
				match = len(m) == len(want) && m[4] == want[4] && m[18] == want[18] && m[19] == want[19]
			}
		}
		if enabled && fix && match {
			return e.Name()
		}
	}
	return ""
}
