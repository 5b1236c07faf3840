package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestVersionOutputs(t *testing.T) {
	root := t.TempDir()
	out, _, err := run(t, root, "", "--version")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^kiln version \S+, build \S+\n$`).MatchString(out) {
		t.Errorf("--version = %q, want docker's shape \"kiln version V, build C\"", out)
	}
	out, _, err = run(t, root, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Version:", "Commit:", "Go version: " + runtime.Version(), "Platform:   " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	old := Version
	Version = "v9.8.7"
	defer func() { Version = old }()
	if v := versionInfo(); v.Version != "v9.8.7" || !strings.HasPrefix(v.Short(), "kiln version v9.8.7, build ") {
		t.Errorf("link-time Version not used: %+v", v)
	}
}

// A buildx-form flag that names a tag is refused like the plain form.
func TestCacheFlagBuildxFormTagRefused(t *testing.T) {
	root := t.TempDir()
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nCOPY Dockerfile /\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, root, "", "build", "--cache-from", "type=registry,ref=127.0.0.1:1/cache:v1", ctx)
	if err == nil || !strings.Contains(err.Error(), "not a tag or digest") {
		t.Fatalf("err = %v, want the tag refused", err)
	}
	_, _, err = run(t, root, "", "build", "--cache-to", "type=s3,bucket=b", ctx)
	if err == nil || !strings.Contains(err.Error(), `cache type "s3" is not supported`) {
		t.Fatalf("err = %v, want type=s3 refused", err)
	}
}
