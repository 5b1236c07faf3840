package security

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestSandboxUnpackedLayerTampered (finding 1): an unpacked layer in the
// store is re-verifiable against its layer: after a base layer's unpacked
// directory is changed (a line added to etc/passwd, a new bin/ file),
// `kiln prune --verify` names the layer and what differs, exits non-zero
// and removes the directory, and the next build unpacks the layer again
// from its verified tar: the tampered content is not used. An untouched
// store verifies clean.
func TestSandboxUnpackedLayerTampered(t *testing.T) {
	t.Parallel()
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		if !sb.Overlay() {
			t.Skipf("%s mode keeps no unpacked layers (its steps run on working copies)", sb.Mode())
		}
		root := storeRoot(flags)
		df := "FROM {{BASE}}\nRUN cat /etc/passwd > /copy; ls /bin > /bins\n"
		if r := buildDockerfile(t, flags, "t:1", df); r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		if r := kilnRun(t, nil, nil, append(append([]string{}, flags...), "prune", "--verify")...); r.err != nil {
			t.Fatalf("prune --verify of an untouched store: %v\n%s", r.err, r)
		}
		// The store keeps the base's unpacked layer for the next build.
		if r := buildDockerfile(t, flags, "t:1", df); r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		passwd, _ := filepath.Glob(filepath.Join(root, "rootfs", "*", "*", "etc", "passwd"))
		if len(passwd) != 1 {
			t.Fatalf("want one unpacked etc/passwd, found %v", passwd)
		}
		layer := filepath.Dir(filepath.Dir(passwd[0]))
		f, err := os.OpenFile(passwd[0], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString("evil:x:0:0::/:/bin/sh\n")
		f.Close()
		if err := os.WriteFile(filepath.Join(layer, "bin", "tamper-check"), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		r := kilnRun(t, nil, nil, append(append([]string{}, flags...), "prune", "--verify")...)
		mustFail(t, r, filepath.Base(layer), "differs from its layer", "etc/passwd", "bin/tamper-check: not in the layer")
		if _, err := os.Stat(layer); err == nil {
			t.Errorf("the tampered layer %s is still in the store", layer)
		}
		// Another step (no step-cache hit) on the same base.
		r = buildDockerfile(t, flags, "t:2", strings.Replace(df, "> /bins", "> /bins; true", 1))
		if r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		img := lastLine(r.stdout)
		if c := imageFile(t, root, img, "copy"); strings.Contains(c, "evil") {
			t.Errorf("the build used the tampered etc/passwd:\n%s", c)
		}
		if b := imageFile(t, root, img, "bins"); strings.Contains(b, "tamper-check") {
			t.Errorf("the build saw the tampered bin/tamper-check")
		}
	})
}
