package security

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/kiln-build/kiln/internal/testutil"
)

var (
	busyboxOnce sync.Once
	busyboxReg  string
)

// busyboxRef is a busybox base image in an in-process registry shared by
// the package's tests.
func busyboxRef(t *testing.T) string {
	t.Helper()
	img := testutil.BusyboxImage(t)
	busyboxOnce.Do(func() {
		// Lives as long as the test process.
		srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		busyboxReg = strings.TrimPrefix(srv.URL, "http://")
	})
	ref := busyboxReg + "/library/busybox:1"
	testutil.PushImage(t, ref, img)
	return ref
}

// TestInputBindMountDockerignore (finding 8): RUN --mount=type=bind of the
// context applies .dockerignore as BuildKit does: an excluded secret.env is
// not visible in the step (nor through a subdirectory's mount), while
// included files are, and a mount of the excluded file itself is not
// found.
func TestInputBindMountDockerignore(t *testing.T) {
	t.Parallel()
	base := busyboxRef(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		".dockerignore":       "secret.env\n**/*.key\n",
		"secret.env":          "TOKEN=hunter2\n",
		"app/main.go":         "package main\n",
		"app/signing.key":     "PRIVATE\n",
		"Dockerfile":          "FROM " + base + "\nRUN --mount=type=bind,target=/ctx --mount=type=bind,source=app,target=/app ls -a /ctx /app > /listing && cat /ctx/app/main.go /app/main.go >> /listing\n",
		"excluded/Dockerfile": "FROM " + base + "\nRUN --mount=type=bind,source=secret.env,target=/s cat /s\n",
	})
	root := t.TempDir()
	r0 := kilnRun(t, nil, nil, "--root", root, "build", "-t", "bind:1", ctx)
	if r0.err != nil {
		t.Fatalf("%v\n%s", r0.err, r0)
	}
	r := kilnRun(t, nil, nil, "--root", root, "build", "-f", ctx+"/excluded/Dockerfile", ctx)
	mustFail(t, r, "secret.env", "not found")
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Errorf("the excluded file's content was shown\n%s", r)
	}
	listing := imageFile(t, root, lastLine(r0.stdout), "listing")
	for _, want := range []string{"main.go", "package main"} {
		if !strings.Contains(listing, want) {
			t.Errorf("the step did not see %q through the bind mount:\n%s", want, listing)
		}
	}
	for _, bad := range []string{"secret.env", "signing.key"} {
		if strings.Contains(listing, bad) {
			t.Errorf("the step saw the excluded %s through the bind mount:\n%s", bad, listing)
		}
	}
}
