package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushVersion pushes a one-layer image labelled v=VERSION to ref.
func pushVersion(t *testing.T, ref, version string) {
	t.Helper()
	img, err := random.Image(1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Labels = map[string]string{"v": version}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func builtLabel(t *testing.T, root, tag string) string {
	t.Helper()
	out, _, err := run(t, root, "", "inspect", tag)
	if err != nil {
		t.Fatal(err)
	}
	var info []struct{ Config v1.Config }
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	return info[0].Config.Labels["v"]
}

// --pull as docker and podman mean it: the store's copy of a base by
// default, the registry's with --pull (always), only the store with
// never, the store when the registry is down with newer.
func TestBuildPullPolicies(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	base := reg.host + "/library/base:1"
	pushVersion(t, base, "1")
	root := t.TempDir()
	if _, _, err := run(t, root, "", "pull", "-q", base); err != nil {
		t.Fatal(err)
	}
	pushVersion(t, base, "2")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nLABEL built=yes\n"), 0o644)
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, "1"}, {[]string{"--pull=missing"}, "1"}, {[]string{"--pull"}, "2"}, {[]string{"--pull=always"}, "2"},
		{[]string{"--pull=true"}, "2"}, {[]string{"--pull=never"}, "1"}, {[]string{"--pull=newer"}, "2"},
	} {
		args := append(append([]string{"build", "-t", "out:x"}, c.flags...), dir)
		if _, _, err := run(t, root, "", args...); err != nil {
			t.Fatalf("%v: %v", c.flags, err)
		}
		if got := builtLabel(t, root, "out:x"); got != c.want {
			t.Errorf("%v: base v%s, want v%s", c.flags, got, c.want)
		}
	}
	// never: a base the store lacks is an error naming it.
	os.WriteFile(filepath.Join(dir, "Dockerfile.other"), []byte("FROM "+reg.host+"/library/other:1\n"), 0o644)
	_, _, err := run(t, root, "", "build", "--pull=never", "-f", filepath.Join(dir, "Dockerfile.other"), dir)
	if err == nil || !strings.Contains(err.Error(), "other:1 is not in the local store (--pull=never)") {
		t.Errorf("--pull=never without the base: %v", err)
	}
	// newer: the registry is down, the store's copy is used with a warning.
	reg.before = func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	_, errOut, err := run(t, root, "", "--retry", "0", "build", "--pull=newer", "-t", "out:x", dir)
	if err != nil || !strings.Contains(errOut, "using the local store's copy (--pull=newer)") || builtLabel(t, root, "out:x") != "1" {
		t.Errorf("--pull=newer with the registry down: %v\n%s", err, errOut)
	}
}

func TestBuildCompatFlagErrors(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	for want, args := range map[string][]string{
		"--pull=sometimes: want always, missing, never or newer":          {"build", "--pull=sometimes", dir},
		"--network=bridge: kiln's RUN steps have default, host or none":   {"build", "--network", "bridge", dir},
		`--provenance=mode=full: mode=full: want min or max`:              {"build", "--provenance=mode=full", dir},
		`--sbom=mode=max: unknown key "mode"`:                             {"build", "--sbom=mode=max", dir},
		`--sbom=generator=docker/scout-sbom-indexer: kiln makes the SBOM`: {"build", "--sbom=generator=docker/scout-sbom-indexer", dir},
		`--attest type=vuln: want type=sbom or type=provenance`:           {"build", "--attest", "type=vuln", dir},
	} {
		if _, _, err := run(t, root, "", args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", args, err, want)
		}
	}
	_, errOut, err := run(t, root, "", "build", "--provenance=false", "--sbom=false", "--builder", "ci", "--layers=false", "--network", "none", dir)
	if err != nil || !strings.Contains(errOut, "--builder ci is ignored") {
		t.Errorf("accepted flags: %v\n%s", err, errOut)
	}
}
