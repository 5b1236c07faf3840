package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	kilnOnce sync.Once
	kilnPath string
	kilnDir  string
	kilnErr  error
)

// KilnBinary returns the path of a kiln binary built from this checkout's
// ./cmd/kiln. It is built once per test process (go build into a temporary
// directory, static: CGO_ENABLED=0); call Main from TestMain so that the directory is removed when
// the tests end. KILN_BINARY=/path/to/kiln uses that binary instead.
func KilnBinary(t testing.TB) string {
	t.Helper()
	kilnOnce.Do(func() {
		if p := os.Getenv("KILN_BINARY"); p != "" {
			kilnPath, kilnErr = filepath.Abs(p)
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			kilnErr = err
			return
		}
		kilnDir, err = os.MkdirTemp("", "kiln-testbin-")
		if err != nil {
			kilnErr = err
			return
		}
		out := filepath.Join(kilnDir, "kiln")
		gobin, err := exec.LookPath("go")
		if err != nil {
			kilnErr = fmt.Errorf("go not found in PATH to build ./cmd/kiln: %w", err)
			return
		}
		// Static, as the release and the README build it: the same binary
		// runs on the host and inside any container image.
		cmd := exec.Command(gobin, "build", "-buildvcs=false", "-trimpath", "-o", out, "./cmd/kiln")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			kilnErr = fmt.Errorf("go build ./cmd/kiln: %v\n%s", err, b)
			return
		}
		// Let other users (rootless tests run kiln as a non-root user) run it.
		_ = os.Chmod(kilnDir, 0o755)
		kilnPath = out
	})
	if kilnErr != nil {
		t.Fatal(kilnErr)
	}
	return kilnPath
}

// Main runs the tests of a package and then removes what the test kit
// made for the whole process (the kiln binary) and stops the shared docker
// daemon (SharedDocker). Use it as:
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	if err := stopSharedDocker(); err != nil {
		fmt.Fprintln(os.Stderr, "stop the tests' docker daemon:", err)
	}
	if kilnDir != "" {
		_ = os.RemoveAll(kilnDir)
	}
	os.Exit(code)
}

var atExit []func()

// AtExit registers f to run when Main ends the test process (last
// registered, first run): for fixtures shared by all of a package's tests,
// such as a registry that outlives any one test.
func AtExit(f func()) { atExit = append(atExit, f) }

// ModuleRoot returns the directory of kiln's go.mod, searched upwards from
// the current directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/kiln-build/kiln\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kiln's go.mod not found above the current directory")
		}
		dir = parent
	}
}
