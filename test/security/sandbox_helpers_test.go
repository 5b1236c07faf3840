package security

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

var (
	modesOnce sync.Once
	modesList []*sandbox.Sandbox
)

// sandboxModes are the isolation modes that work for this user here (as
// root in CI: root, userns and chroot; as kilnuser and kilnplain: userns).
// A test of the sandbox runs its attack in each; it skips only where no
// mode works at all.
func sandboxModes(t *testing.T) []*sandbox.Sandbox {
	t.Helper()
	modesOnce.Do(func() {
		for _, m := range sandbox.Modes() {
			if m == sandbox.ModeNone {
				continue
			}
			if sb, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: m}); err == nil {
				modesList = append(modesList, sb)
			}
		}
	})
	if len(modesList) == 0 {
		t.Skip("no isolation mode works here")
	}
	return modesList
}

// eachSandboxMode runs f as a parallel subtest per mode, with the kiln
// global flags that select it and a store of its own.
func eachSandboxMode(t *testing.T, f func(t *testing.T, sb *sandbox.Sandbox, flags []string)) {
	t.Helper()
	for _, sb := range sandboxModes(t) {
		sb := sb
		t.Run(string(sb.Mode()), func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			t.Cleanup(func() { _ = sb.Remove(context.Background(), filepath.Join(root, "rootfs")) })
			f(t, sb, []string{"--root", root, "--isolation", string(sb.Mode())})
		})
	}
}

// storeRoot is the --root of flags.
func storeRoot(flags []string) string {
	for i, f := range flags {
		if f == "--root" && i+1 < len(flags) {
			return flags[i+1]
		}
	}
	return ""
}

// findNamed lists the paths below dir whose base name is name.
func findNamed(dir, name string) []string {
	var out []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == name {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// buildDockerfile writes df (FROM {{BASE}} replaced) in a fresh context
// and builds it with flags, tagging the image tag.
func buildDockerfile(t *testing.T, flags []string, tag, df string) result {
	t.Helper()
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": strings.ReplaceAll(df, "{{BASE}}", busyboxRef(t))})
	return kilnRun(t, nil, nil, append(append([]string{}, flags...), "build", "-t", tag, ctx)...)
}
