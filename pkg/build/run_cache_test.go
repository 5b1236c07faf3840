package build_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
)

func withCache(c build.StepCache) func(*build.Options) {
	return func(o *build.Options) { o.Cache = c }
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// TestRunStepCache: a RUN step whose inputs are unchanged is not run again
// (its output holds the uptime and its pid, so running it again would give
// a different layer); changing anything it depends on (an ENV, a build arg, a
// file a COPY before it adds, a context file it binds) runs it again; a
// COPY after a cached RUN still sees the symlink the RUN made; and with no
// cache every step runs.
func TestRunStepCache(t *testing.T) {
	e, sb := runEnv(t)
	c := cache.NewLocal(e.store)
	df := `FROM {{REG}}/library/busybox
ARG FLAVOUR=plain
ENV MODE=one
COPY in.txt /in.txt
RUN mkdir -p /var/tmp/d && ln -s /var/tmp/d /link && cat /proc/uptime /proc/self/stat > /stamp
RUN --mount=type=bind,source=ctx,target=/ctx cat /ctx/b.txt /proc/uptime /proc/self/stat > /bound
COPY late.txt /link/
`
	files := map[string]file{"in.txt": {content: "in"}, "late.txt": {content: "late"}, "ctx/b.txt": {content: "bound"}}
	buildIt := func(df string, files map[string]file, mod ...func(*build.Options)) ([]string, string) {
		t.Helper()
		var log bytes.Buffer
		img := e.mustBuild(t, df, files, append([]func(*build.Options){withSandbox(sb, &log), withCache(c)}, mod...)...)
		if l := treeLine(t, img, "/var/tmp/d/late.txt"); l == "" {
			t.Errorf("COPY through the RUN's symlink: no /var/tmp/d/late.txt in\n%s", strings.Join(testutil.ImageTree(t, img), "\n"))
		}
		return layerDigests(t, img), log.String()
	}
	first, log1 := buildIt(df, files)
	if strings.Contains(log1, "CACHED") {
		t.Fatalf("first build hit the cache:\n%s", log1)
	}
	n := len(first)
	second, log2 := buildIt(df, files)
	if strings.Count(log2, "CACHED") != 2 || strings.Join(second, " ") != strings.Join(first, " ") {
		t.Fatalf("second build: layers %v, want %v; log:\n%s", second, first, log2)
	}

	// What each change invalidates: the RUN layers are at n-3 and n-2.
	for _, tc := range []struct {
		name      string
		df        string
		files     map[string]file
		mod       []func(*build.Options)
		wantFresh []int // layer indexes that must differ from the first build
	}{
		{"ENV", strings.Replace(df, "MODE=one", "MODE=two", 1), files, nil, []int{n - 3, n - 2}},
		{"build arg", df, files, []func(*build.Options){func(o *build.Options) { o.BuildArgs = map[string]string{"FLAVOUR": "x"} }}, []int{n - 3, n - 2}},
		{"COPY content", df, map[string]file{"in.txt": {content: "IN"}, "late.txt": {content: "late"}, "ctx/b.txt": {content: "bound"}}, nil, []int{n - 4, n - 3, n - 2}},
		{"bound file", df, map[string]file{"in.txt": {content: "in"}, "late.txt": {content: "late"}, "ctx/b.txt": {content: "BOUND"}}, nil, []int{n - 2}},
	} {
		got, log := buildIt(tc.df, tc.files, tc.mod...)
		fresh := map[int]bool{}
		for _, i := range tc.wantFresh {
			fresh[i] = true
		}
		for i := n - 3; i <= n-2; i++ {
			if fresh[i] == (got[i] == first[i]) {
				t.Errorf("%s: RUN layer %d: fresh=%v but digest %s (first build %s); log:\n%s", tc.name, i, fresh[i], got[i], first[i], log)
			}
		}
	}

	// A new checkout of the same files (new mtimes, no --timestamp): the
	// COPY layer changes (it keeps mtimes), the RUN steps stay cached.
	touched := func(when time.Time) func(*build.Options) {
		return func(o *build.Options) {
			o.Timestamp = nil
			filepath.Walk(o.ContextDir, func(p string, fi os.FileInfo, err error) error {
				if err == nil {
					os.Chtimes(p, when, when)
				}
				return nil
			})
		}
	}
	a, logA := buildIt(df, files, touched(time.Now().Add(-time.Hour)))
	b, logB := buildIt(df, files, touched(time.Now()))
	if strings.Contains(logA, "CACHED") || strings.Count(logB, "CACHED") != 2 {
		t.Errorf("new mtimes: want the first build to run and the second to hit; logs:\n%s\n%s", logA, logB)
	}
	if a[n-4] == b[n-4] || a[n-3] != b[n-3] || a[n-2] != b[n-2] {
		t.Errorf("new mtimes: COPY layer %s then %s (want a change), RUN layers %v then %v (want the same)", a[n-4], b[n-4], a[n-3:n-1], b[n-3:n-1])
	}

	// No cache: both RUN steps run again.
	got, log := buildIt(df, files, func(o *build.Options) { o.Cache = nil })
	if strings.Contains(log, "CACHED") || got[n-3] == first[n-3] {
		t.Errorf("without a cache the RUN was not run again; log:\n%s", log)
	}
}

// TestRunStepCacheHeredocScript: a #! heredoc script runs from a file, so
// its text must be in the key: changing only the script runs it again.
func TestRunStepCacheHeredocScript(t *testing.T) {
	e, sb := runEnv(t)
	c := cache.NewLocal(e.store)
	script := func(word string) string {
		return "FROM {{REG}}/library/busybox\nRUN <<EOT\n#!/bin/sh\necho " + word + " > /out\nEOT\n"
	}
	for _, word := range []string{"one", "two"} {
		var log bytes.Buffer
		img := e.mustBuild(t, script(word), nil, withSandbox(sb, &log), withCache(c))
		if l := treeLine(t, img, "/out"); !strings.Contains(l, sha256Hex(word+"\n")) {
			t.Errorf("script echoing %s: /out is %q; log:\n%s", word, l, log.String())
		}
		cfg, _ := img.ConfigFile()
		if h := cfg.History[len(cfg.History)-1].CreatedBy; !strings.Contains(h, "echo "+word) {
			t.Errorf("history %q lacks the script", h)
		}
	}
}
