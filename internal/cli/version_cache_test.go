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

func TestParseCacheSpec(t *testing.T) {
	for _, c := range []struct {
		in      string
		repo    string
		ignore  bool
		wantErr string
	}{
		{in: "reg.example:5000/team/cache", repo: "reg.example:5000/team/cache", ignore: true},
		{in: "type=registry,ref=reg.example/cache", repo: "reg.example/cache"},
		{in: "type=registry,ref=reg.example/cache,mode=max", repo: "reg.example/cache"},
		{in: "type=registry,ref=reg.example/cache,mode=min,ignore-error=true", repo: "reg.example/cache", ignore: true},
		{in: "ref=reg.example/cache,type=registry,image-manifest=true,oci-mediatypes=true", repo: "reg.example/cache"},
		{in: `"type=registry","ref=reg.example/cache"`, repo: "reg.example/cache"},
		{in: "type=local,src=/tmp/cache", wantErr: `cache type "local" is not supported`},
		{in: "type=gha", wantErr: `cache type "gha" is not supported`},
		{in: "type=inline", wantErr: `cache type "inline" is not supported`},
		{in: "type=registry", wantErr: "missing ref=REPO"},
		{in: "ref=reg.example/cache", wantErr: "missing type=registry"},
		{in: "type=registry,ref=r.example/c,mode=all", wantErr: "mode must be min or max"},
		{in: "type=registry,ref=r.example/c,compression=zstd", wantErr: `unknown key "compression"`},
		{in: "type=registry,ref=r.example/c,ignore-error=maybe", wantErr: "ignore-error: want true or false"},
		{in: "type=registry,ref=r.example/c,oci-mediatypes=false", wantErr: "not supported"},
		{in: "type=registry,ref=r.example/c,junk", wantErr: `"junk" is not KEY=VALUE`},
		{in: "reg.example/cache,mode=max", wantErr: "want a repository or type=registry,ref=REPO"},
	} {
		repo, ignore, err := parseCacheSpec("--cache-from", c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "--cache-from") {
				t.Errorf("%q: error %v, want one naming the flag and containing %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || repo != c.repo || ignore != c.ignore {
			t.Errorf("%q = (%q, %v, %v), want (%q, %v)", c.in, repo, ignore, err, c.repo, c.ignore)
		}
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
