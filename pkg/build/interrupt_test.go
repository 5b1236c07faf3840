package build_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/build"
)

// An interrupted build leaves nothing partial: no temp file, no blob that
// does not match its digest, no ref.
func TestInterruptedBuildLeavesNothingPartial(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write([]byte(strings.Repeat("x", 1000)))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	defer srv.Close()

	tmpdir := t.TempDir()
	t.Setenv("TMPDIR", tmpdir) // spooled content goes here
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	ts := time.Unix(1, 0)
	_, err := build.Build(ctx, build.Options{
		ContextDir: writeContext(t, copyContext),
		Dockerfile: []byte("FROM scratch\nCOPY lib/ /lib/\nADD " + srv.URL + "/big /big\n"),
		Store:      e.store,
		Timestamp:  &ts,
	})
	if err == nil {
		t.Fatal("the interrupted build succeeded")
	}
	if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "canceled") {
		t.Logf("error: %v", err)
	}
	root := e.store.Root()
	tmp, _ := os.ReadDir(filepath.Join(root, "tmp"))
	for _, f := range tmp {
		if !strings.HasSuffix(f.Name(), ".lock") {
			t.Errorf("temp file left behind: %s", f.Name())
		}
	}
	blobs, _ := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(root, "blobs", "sha256", b.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != b.Name() {
			t.Errorf("blob %s does not match its digest", b.Name())
		}
	}
	refs, err := e.store.List()
	if err != nil || len(refs) != 0 {
		t.Errorf("refs after an interrupted build: %v %v", refs, err)
	}
	if left, _ := os.ReadDir(tmpdir); len(left) != 0 {
		t.Errorf("%d temporary files left behind in TMPDIR, e.g. %s", len(left), left[0].Name())
	}
}
