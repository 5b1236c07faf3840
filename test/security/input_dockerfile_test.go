package security

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInputDockerfileSymlink (finding 7): a Dockerfile that is a symlink to
// a file outside the context (a context directory, a `build -` tar, or -f
// naming a link in the context) is resolved inside the context like any
// source: the host file is never read, and its content never shows in an
// error. A link to a file inside the context still works.
func TestInputDockerfileSymlink(t *testing.T) {
	t.Parallel()
	const secret = "TOP-SECRET-HOST-LINE-5b1d"
	host := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(host, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noSecret := func(t *testing.T, r result) {
		t.Helper()
		if r.err == nil {
			t.Fatalf("kiln built with a Dockerfile linked outside the context\n%s", r)
		}
		if strings.Contains(r.stderr+r.stdout, secret) {
			t.Errorf("kiln printed the content of a host file outside the context\n%s", r)
		}
	}
	t.Run("dir", func(t *testing.T) {
		t.Parallel()
		ctx := t.TempDir()
		if err := os.Symlink(host, filepath.Join(ctx, "Dockerfile")); err != nil {
			t.Fatal(err)
		}
		noSecret(t, kilnRun(t, nil, nil, "--root", t.TempDir(), "build", ctx))
	})
	t.Run("relative-dir", func(t *testing.T) {
		t.Parallel()
		ctx := t.TempDir()
		rel, err := filepath.Rel(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, filepath.Join(ctx, "Dockerfile")); err != nil {
			t.Fatal(err)
		}
		noSecret(t, kilnRun(t, nil, nil, "--root", t.TempDir(), "build", ctx))
	})
	t.Run("flag", func(t *testing.T) {
		t.Parallel()
		ctx := t.TempDir()
		if err := os.Symlink(host, filepath.Join(ctx, "ci.Dockerfile")); err != nil {
			t.Fatal(err)
		}
		noSecret(t, kilnRun(t, nil, nil, "--root", t.TempDir(), "build", "-f", filepath.Join(ctx, "ci.Dockerfile"), ctx))
	})
	t.Run("stdin-tar", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeSymlink, Linkname: host, Mode: 0o777})
		tw.Close()
		noSecret(t, kilnRun(t, &buf, nil, "--root", t.TempDir(), "build", "-"))
	})
	t.Run("inside", func(t *testing.T) {
		t.Parallel()
		ctx := t.TempDir()
		writeFiles(t, ctx, map[string]string{"docker/real": "FROM scratch\nCOPY a /a\n", "a": "a\n"})
		if err := os.Symlink("docker/real", filepath.Join(ctx, "Dockerfile")); err != nil {
			t.Fatal(err)
		}
		if r := kilnRun(t, nil, nil, "--root", t.TempDir(), "build", ctx); r.err != nil {
			t.Fatalf("a Dockerfile linked inside the context: %v\n%s", r.err, r)
		}
	})
}

// TestInputDockerfileSizes (finding 11): a 100 KB FROM line is an error
// naming its line (not "no instructions"), and an ENV that doubles itself
// stops once the config outgrows what registries accept, naming the line,
// instead of growing to hundreds of megabytes.
func TestInputDockerfileSizes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, dockerfile string
		want             []string
	}{
		{"long-line", "FROM scratch\n# a comment\nFROM " + strings.Repeat("a", 100_000) + "\n", []string{"Dockerfile:3", "65535"}},
		{"env-doubling", "FROM scratch\nENV A=" + strings.Repeat("x", 32) + "\n" + strings.Repeat("ENV A=$A$A\n", 30), []string{"Dockerfile:20", "doubling itself"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.TempDir()
			writeFiles(t, ctx, map[string]string{"Dockerfile": c.dockerfile})
			mustFail(t, kilnRunTimeout(t, 2*time.Minute, nil, nil, "--root", t.TempDir(), "build", ctx), c.want...)
		})
	}
}
