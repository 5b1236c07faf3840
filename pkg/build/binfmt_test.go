package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestEmulatorFromBinfmtMisc: a foreign platform's RUN needs an enabled
// binfmt_misc handler whose magic matches the platform's executables and
// that has the fix-binary flag; otherwise the error says what to do. The
// handlers are read from a directory laid out as the kernel's.
func TestEmulatorFromBinfmtMisc(t *testing.T) {
	foreign := v1.Platform{OS: "linux", Architecture: "arm64"}
	if runtime.GOARCH == "arm64" {
		foreign = v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	magic := map[string]string{
		"arm64": "7f454c460201010000000000000000000200b700",
		"amd64": "7f454c4602010100000000000000000002003e00",
	}[foreign.Architecture]
	handler := func(flags string) string {
		return "enabled\ninterpreter /usr/bin/qemu-static\nflags: " + flags + "\noffset 0\nmagic " + magic +
			"\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
	}
	dir := t.TempDir()
	old := binfmtDir
	binfmtDir = dir
	t.Cleanup(func() { binfmtDir = old })
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if note, err := emulator(plat.Default()); note != "" || err != nil {
		t.Errorf("host platform: %q, %v; want native", note, err)
	}
	if _, err := emulator(foreign); err == nil || !strings.Contains(err.Error(), "binfmt_misc is not mounted") ||
		!strings.Contains(err.Error(), "install qemu-user-static and register its binfmt_misc handlers with the fix-binary flag") {
		t.Errorf("unmounted: %v", err)
	}
	write("status", "enabled\n")
	write("register", "")
	write("python3.11", "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n")
	if _, err := emulator(foreign); err == nil || !strings.Contains(err.Error(), "no binfmt_misc handler") {
		t.Errorf("no handler: %v", err)
	}
	write("qemu-x", handler("P"))
	if _, err := emulator(foreign); err == nil || !strings.Contains(err.Error(), "handler qemu-x (/usr/bin/qemu-static) lacks the fix-binary flag (F)") {
		t.Errorf("handler without F: %v", err)
	}
	write("qemu-y", handler("PF"))
	if note, err := emulator(foreign); err != nil || !strings.Contains(note, "binfmt_misc handler qemu-y") {
		t.Errorf("handler with F: %q, %v", note, err)
	}
	write("qemu-y", strings.Replace(handler("PF"), "enabled", "disabled", 1))
	if _, err := emulator(foreign); err == nil {
		t.Error("a disabled handler was used")
	}
	if _, err := emulator(v1.Platform{OS: "windows", Architecture: "amd64"}); err == nil {
		t.Error("RUN for windows accepted")
	}
}

// TestForeignRunFailsBeforeAnyWork: with several --platform values, a RUN
// step for a platform no handler runs fails the build before the first
// platform is built, naming the RUN line.
func TestForeignRunFailsBeforeAnyWork(t *testing.T) {
	foreign := v1.Platform{OS: "linux", Architecture: "s390x"}
	old := binfmtDir
	binfmtDir = filepath.Join(t.TempDir(), "not-mounted")
	t.Cleanup(func() { binfmtDir = old })
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	_, err = Build(context.Background(), Options{
		ContextDir: ctxDir, Dockerfile: []byte("FROM scratch\nCOPY a /a\nRUN true\n"), Store: st, Log: &log,
		Platforms: []v1.Platform{plat.Default(), foreign},
	})
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:3: RUN: ") || !strings.Contains(err.Error(), "linux/s390x") {
		t.Fatalf("err = %v, want the RUN line and linux/s390x", err)
	}
	if strings.Contains(log.String(), "COPY") {
		t.Errorf("a step ran before the check:\n%s", log.String())
	}
}
