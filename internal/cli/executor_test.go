package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A kaniko job's command line, unchanged but for the binary: two
// destinations pushed, kaniko's digest files written, the registry cache
// derived from the destination, a tar of the image.
func TestExecutorKanikoJob(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "docker"), 0o755)
	os.WriteFile(filepath.Join(ctx, "docker", "Dockerfile-build"), []byte("FROM scratch\nARG PIPELINE_ID_ARG\nLABEL pipeline=$PIPELINE_ID_ARG\nCOPY app.txt /app/\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "app.txt"), []byte("app"), 0o644)
	out := t.TempDir()
	d1, d2 := reg.host+"/team/app:1", reg.host+"/team/app:latest"
	_, stderr, err := run(t, root, "", "executor", "--context", "dir://"+ctx, "--dockerfile", "docker/Dockerfile-build",
		"--destination", d1, "--destination", d2, "--build-arg", "PIPELINE_ID_ARG=77",
		"--digest-file", filepath.Join(out, "digest"),
		"--image-name-with-digest-file", filepath.Join(out, "names"),
		"--image-name-tag-with-digest-file", filepath.Join(out, "tagged"),
		"--tar-path", filepath.Join(out, "image.tar"), "--cache=true", "--snapshot-mode=redo", "--cleanup")
	if err != nil {
		t.Fatalf("executor: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "--snapshot-mode has no effect") {
		t.Errorf("no note for a kaniko no-op flag:\n%s", stderr)
	}
	digest, _ := os.ReadFile(filepath.Join(out, "digest"))
	if !strings.HasPrefix(string(digest), "sha256:") {
		t.Fatalf("digest file %q", digest)
	}
	for _, tg := range []string{"team/app:1", "team/app:latest"} {
		if got := reg.remoteDigest(t, tg); got != string(digest) {
			t.Errorf("%s pushed as %s, digest file says %s", tg, got, digest)
		}
	}
	names, _ := os.ReadFile(filepath.Join(out, "names"))
	repo := reg.host + "/team/app"
	if want := repo + "@" + string(digest) + "\n" + repo + "@" + string(digest) + "\n"; string(names) != want {
		t.Errorf("image-name-with-digest-file %q, want %q", names, want)
	}
	tagged, _ := os.ReadFile(filepath.Join(out, "tagged"))
	if want := d1 + "@" + string(digest) + "\n" + d2 + "@" + string(digest) + "\n"; string(tagged) != want {
		t.Errorf("image-name-tag-with-digest-file %q, want %q", tagged, want)
	}
	tb, err := os.ReadFile(filepath.Join(out, "image.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := tar.NewReader(bytes.NewReader(tb)).Next(); err != nil || h == nil {
		t.Errorf("--tar-path is not a tar: %v", err)
	}
	if !strings.Contains(string(tb), "team/app:1") {
		t.Errorf("--tar-path archive does not name the destinations")
	}
}

func TestExecutorFlagErrors(t *testing.T) {
	root := t.TempDir()
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	for want, args := range map[string][]string{
		"you must provide --destination, or use --no-push": {"executor", "--context", ctx},
		"not s3://":                                 {"executor", "--context", "s3://bucket/ctx.tar.gz", "--no-push"},
		"--dockerfile nope: not found":              {"executor", "--context", ctx, "--dockerfile", "nope", "--no-push"},
		`--verbosity "loud"`:                        {"executor", "--context", ctx, "--no-push", "--verbosity", "loud"},
		"unknown flag: --snapshot-modes":            {"executor", "--context", ctx, "--no-push", "--snapshot-modes=full"},
		`invalid argument "soon" for "--cache-ttl"`: {"executor", "--context", ctx, "--no-push", "--cache-ttl=soon"},
		"--context " + ctx + "/x: not a directory":  {"executor", "--context", ctx + "/x", "--no-push"},
	} {
		if _, _, err := run(t, root, "", args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", args, err, want)
		}
	}
	// --no-push with a tar context builds.
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	df := []byte("FROM scratch\nCOPY f /f\n")
	tw.WriteHeader(&tar.Header{Name: "sub/Dockerfile", Mode: 0o644, Size: int64(len(df))})
	tw.Write(df)
	tw.WriteHeader(&tar.Header{Name: "sub/f", Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	tarFile := filepath.Join(t.TempDir(), "ctx.tar")
	os.WriteFile(tarFile, b.Bytes(), 0o644)
	out, _, err := run(t, root, "", "executor", "--context", "tar://"+tarFile, "--context-sub-path", "sub", "--no-push")
	if err != nil || !idLine.MatchString(out) {
		t.Errorf("tar:// context: %q %v", out, err)
	}
}

func TestIsExecutorName(t *testing.T) {
	for argv0, want := range map[string]bool{"/kaniko/executor": true, "executor": true, "/usr/bin/kiln": false, "executors": false} {
		if got := isExecutorName(argv0); got != want {
			t.Errorf("isExecutorName(%q) = %v", argv0, got)
		}
	}
}
