package build_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestRunSecretMounts: RUN --mount=type=secret shows a secret (from a file
// or an environment variable) to the step as a file (default
// /run/secrets/ID, or target=) and as a variable (env=), and nothing of it
// reaches a layer, the config, the history, the step cache or the store's
// temp directory; a missing optional secret is left out, a missing
// required one is an error naming it.
func TestRunSecretMounts(t *testing.T) {
	e, sb := runEnv(t)
	const value = "s3cret-Value-42"
	secretFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secretFile, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TEST_SECRET_ENV", value+"-env")
	want := sha256Hex(value)
	wantEnv := sha256Hex(value + "-env")
	df := `FROM {{REG}}/library/busybox
RUN --mount=type=secret,id=tok test "$(sha256sum /run/secrets/tok | cut -c1-64)" = "` + want + `" && echo ok > /ok
RUN --mount=type=secret,id=tok,env=TOKEN,target=/root/.npmrc test "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = "` + want + `" && test -f /root/.npmrc && echo ok > /ok2
RUN --mount=type=secret,id=fromenv,mode=0444 test "$(sha256sum /run/secrets/fromenv | cut -c1-64)" = "` + wantEnv + `" && echo ok > /ok3
RUN --mount=type=secret,id=absent sh -c 'ls /run/secrets/absent 2>/dev/null | wc -l > /count'
`
	secrets := func(o *build.Options) {
		o.Secrets = map[string]build.Secret{"tok": {File: secretFile}, "fromenv": {Env: "KILN_TEST_SECRET_ENV"}}
	}
	c := cache.NewLocal(e.store)
	img := e.mustBuild(t, df, nil, withSandbox(sb, nil), secrets, withCache(c))
	tree := testutil.ImageTree(t, img)
	for _, p := range []string{"/ok", "/ok2", "/ok3"} {
		if testutil.TreeEntry(tree, p) == "" {
			t.Errorf("%s missing: the step did not see the secret", p)
		}
	}
	if l := testutil.TreeEntry(tree, "/count"); !strings.Contains(l, sha256Hex("0\n")) {
		t.Errorf("an absent optional secret was mounted: %s", l)
	}
	for _, l := range tree {
		if strings.HasPrefix(l, "/run/secrets") || strings.HasPrefix(l, "/root/.npmrc") {
			t.Errorf("a secret mount point reached the image: %s", l)
		}
	}
	// No blob of the store (layers, config, cache entries) holds the secret.
	blobs, _ := filepath.Glob(filepath.Join(e.store.Root(), "blobs", "sha256", "*"))
	for _, b := range blobs {
		data, _ := os.ReadFile(b)
		if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
			if u, err := io.ReadAll(zr); err == nil {
				data = u
			}
		}
		if bytes.Contains(data, []byte(value)) {
			t.Errorf("blob %s holds the secret", filepath.Base(b))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(e.store.Root(), "tmp", "*short*")); len(left) != 0 {
		t.Errorf("secret files left behind: %v", left)
	}

	// A required secret the build lacks.
	_, err := e.build(t, "FROM {{REG}}/library/busybox\nRUN --mount=type=secret,id=npmrc,required=true true\n", nil, withSandbox(sb, nil))
	if err == nil || !strings.Contains(err.Error(), "npmrc") || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Errorf("missing required secret: %v", err)
	}
}

// TestRunHeredocScriptAndSecretInEveryMode: a RUN heredoc that starts with
// #! runs as a script from /dev/pipes/NAME (as BuildKit does), and secrets
// are shown, in this machine's mode, on a working copy, and (as root) in
// chroot mode, which copies such files in for the step; neither reaches
// the image. Other mounts in chroot mode are a clear error.
func TestRunHeredocScriptAndSecretInEveryMode(t *testing.T) {
	e, sb := runEnv(t)
	secretFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secretFile, []byte("tok-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	df := "FROM {{REG}}/library/busybox\nRUN <<EOT\n#!/bin/sh\necho \"ran as $0\" > /out\nEOT\n" +
		"RUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = tok-value && echo ok > /ok\n"
	secrets := func(o *build.Options) { o.Secrets = map[string]build.Secret{"tok": {File: secretFile}} }
	modes := []*sandbox.Sandbox{sb}
	if wc, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sb.Mode(), NoOverlay: true}); err == nil {
		modes = append(modes, wc)
	}
	var chroot *sandbox.Sandbox
	if os.Geteuid() == 0 {
		var err error
		if chroot, _, err = sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModeChroot}); err != nil {
			t.Fatal(err)
		}
		modes = append(modes, chroot)
	}
	for _, m := range modes {
		img := e.mustBuild(t, df, nil, withSandbox(m, nil), secrets)
		tree := testutil.ImageTree(t, img)
		if l := testutil.TreeEntry(tree, "/out"); !strings.Contains(l, sha256Hex("ran as /dev/pipes/EOT\n")) {
			t.Errorf("%s (overlay %v): /out = %q", m.Mode(), m.Overlay(), l)
		}
		if testutil.TreeEntry(tree, "/ok") == "" {
			t.Errorf("%s (overlay %v): the secret was not shown", m.Mode(), m.Overlay())
		}
		for _, l := range tree {
			if strings.HasPrefix(l, "/dev/pipes") || strings.HasPrefix(l, "/run/secrets") || strings.HasPrefix(l, "/run ") {
				t.Errorf("%s (overlay %v): %s reached the image", m.Mode(), m.Overlay(), l)
			}
		}
	}
	if chroot != nil {
		// Cache mounts work there too (moved in and out), and stay out of
		// the image.
		img := e.mustBuild(t, "FROM {{REG}}/library/busybox\nRUN --mount=type=cache,target=/c echo x >> /c/f && cp /c/f /f\n", nil, withSandbox(chroot, nil))
		tree := testutil.ImageTree(t, img)
		if testutil.TreeEntry(tree, "/f") == "" || testutil.TreeEntry(tree, "/c") != "" {
			t.Errorf("cache mount in chroot mode:\n%s", strings.Join(tree, "\n"))
		}
	}
}

// TestRunSSHMount: RUN --mount=type=ssh binds the ssh-agent socket the
// build was given at /run/buildkit/ssh_agent.N (or target=) with
// SSH_AUTH_SOCK set, leaves nothing in the image, and a required agent
// the build lacks is an error naming it.
func TestRunSSHMount(t *testing.T) {
	e, sb := runEnv(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	df := `FROM {{REG}}/library/busybox
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /sock
RUN --mount=type=ssh,id=deploy,target=/tmp/agent test -S /tmp/agent && test "$SSH_AUTH_SOCK" = /tmp/agent && echo ok > /ok
`
	img := e.mustBuild(t, df, nil, withSandbox(sb, nil), func(o *build.Options) {
		o.SSH = map[string]string{"default": sock, "deploy": sock}
	})
	tree := testutil.ImageTree(t, img)
	if l := testutil.TreeEntry(tree, "/sock"); !strings.Contains(l, sha256Hex("/run/buildkit/ssh_agent.0\n")) {
		t.Errorf("/sock: %q", l)
	}
	if testutil.TreeEntry(tree, "/ok") == "" {
		t.Error("the agent socket was not at target=")
	}
	for _, l := range tree {
		if strings.HasPrefix(l, "/run") || strings.HasPrefix(l, "/tmp/agent") {
			t.Errorf("%s reached the image", l)
		}
	}
	if os.Geteuid() == 0 {
		// chroot mode relays the agent through a socket it places.
		chroot, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModeChroot})
		if err != nil {
			t.Fatal(err)
		}
		img := e.mustBuild(t, df, nil, withSandbox(chroot, nil), func(o *build.Options) {
			o.SSH = map[string]string{"default": sock, "deploy": sock}
		})
		tree := testutil.ImageTree(t, img)
		if testutil.TreeEntry(tree, "/ok") == "" || testutil.TreeEntry(tree, "/sock") == "" {
			t.Errorf("chroot mode: the agent socket was not placed:\n%s", strings.Join(tree, "\n"))
		}
		for _, l := range tree {
			if strings.HasPrefix(l, "/run") || strings.HasPrefix(l, "/tmp/agent") {
				t.Errorf("chroot mode: %s reached the image", l)
			}
		}
	}
	_, err = e.build(t, "FROM {{REG}}/library/busybox\nRUN --mount=type=ssh,required=true true\n", nil, withSandbox(sb, nil))
	if err == nil || !strings.Contains(err.Error(), `ssh agent "default"`) || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Errorf("missing required agent: %v", err)
	}
}
