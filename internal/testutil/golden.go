package testutil

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// update is the -update flag of every test binary that imports testutil.
// Packages that import testutil must not define their own "update" flag.
var update = flag.Bool("update", false, "rewrite testdata/golden/*.txt with what the tests got")

// Updating reports whether golden files are being rewritten: the -update
// flag, or KILN_UPDATE_GOLDEN=1 in the environment (handy with
// `go test ./...`, where packages without testutil reject -update).
func Updating() bool {
	return *update || os.Getenv("KILN_UPDATE_GOLDEN") == "1"
}

// GoldenPath returns the file that Golden compares name with:
// testdata/golden/NAME.txt in the current directory, which `go test` sets to
// the directory of the package under test.
func GoldenPath(name string) string {
	return filepath.Join("testdata", "golden", filepath.FromSlash(name)+".txt")
}

// Golden compares got, one string per line, with GoldenPath(name) and fails
// the test with a line diff when they differ or the file is missing. With
// `go test -update` (or KILN_UPDATE_GOLDEN=1) it writes got to the file
// instead, creating directories as needed; review the change with git diff.
//
// A typical instruction test:
//
//	img := build(t, "FROM busybox\nCOPY a /a\n")
//	testutil.Golden(t, "copy-file.tree", testutil.ImageTree(t, img))
//	testutil.GoldenString(t, "copy-file.config", testutil.ConfigSummary(t, img))
func Golden(t testing.TB, name string, got []string) {
	t.Helper()
	p := GoldenPath(name)
	if Updating() {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, l := range got {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d lines)", p, len(got))
		return
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("golden file %s does not exist; create it with: go test -run '^%s$' -update",
			p, strings.SplitN(t.Name(), "/", 2)[0])
	}
	if err != nil {
		t.Fatal(err)
	}
	want := splitLines(string(data))
	if d := lineDiff(want, got); d != "" {
		t.Errorf("%s differs (-want +got); if the change is right, rerun with -update:\n%s", p, d)
	}
}

// GoldenString is Golden for a text: s is split into lines.
func GoldenString(t testing.TB, name, s string) {
	t.Helper()
	Golden(t, name, splitLines(s))
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// ConfigSummary returns, as indented JSON with a fixed key order, the parts
// of img's config that Dockerfile instructions set, and its history:
//
//	{"Env", "Cmd", "Entrypoint", "User", "WorkingDir", "ExposedPorts" (sorted
//	list), "Volumes" (sorted list), "Labels" (keys sorted), "StopSignal",
//	"Healthcheck", "OnBuild", "Shell", "History": [{"created_by",
//	"empty_layer"}]}
//
// Every key is always present; null and [] are told apart (CMD [] is not the
// absence of CMD). Timestamps, digests, architecture and rootfs are left out
// so that the result is stable across machines and runs. Compare it with
// GoldenString.
func ConfigSummary(t testing.TB, img v1.Image) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("ConfigSummary: %v", err)
	}
	s, err := configSummary(cf)
	if err != nil {
		t.Fatalf("ConfigSummary: %v", err)
	}
	return s
}

type historySummary struct {
	CreatedBy  string `json:"created_by"`
	EmptyLayer bool   `json:"empty_layer"`
}

type configSummaryJSON struct {
	Env          []string          `json:"Env"`
	Cmd          []string          `json:"Cmd"`
	Entrypoint   []string          `json:"Entrypoint"`
	User         string            `json:"User"`
	WorkingDir   string            `json:"WorkingDir"`
	ExposedPorts []string          `json:"ExposedPorts"`
	Volumes      []string          `json:"Volumes"`
	Labels       map[string]string `json:"Labels"`
	StopSignal   string            `json:"StopSignal"`
	Healthcheck  *v1.HealthConfig  `json:"Healthcheck"`
	OnBuild      []string          `json:"OnBuild"`
	Shell        []string          `json:"Shell"`
	History      []historySummary  `json:"History"`
}

func configSummary(cf *v1.ConfigFile) (string, error) {
	c := cf.Config
	s := configSummaryJSON{
		Env:          c.Env,
		Cmd:          c.Cmd,
		Entrypoint:   c.Entrypoint,
		User:         c.User,
		WorkingDir:   c.WorkingDir,
		ExposedPorts: sortedKeys(c.ExposedPorts),
		Volumes:      sortedKeys(c.Volumes),
		Labels:       c.Labels,
		StopSignal:   c.StopSignal,
		Healthcheck:  c.Healthcheck,
		OnBuild:      c.OnBuild,
		Shell:        c.Shell,
		History:      []historySummary{},
	}
	for _, h := range cf.History {
		s.History = append(s.History, historySummary{CreatedBy: h.CreatedBy, EmptyLayer: h.EmptyLayer})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func sortedKeys(m map[string]struct{}) []string {
	if m == nil {
		return nil
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// lineDiff returns a diff of two line lists, "-" for want only and "+" for
// got only, with a little context; "" if they are equal. It keeps the diff
// readable for image trees of thousands of lines: the common head and tail
// are cut, and a longest-common-subsequence diff is used for the rest when
// it is small enough.
func lineDiff(want, got []string) string {
	if len(want) == len(got) {
		same := true
		for i := range want {
			if want[i] != got[i] {
				same = false
				break
			}
		}
		if same {
			return ""
		}
	}
	pre := 0
	for pre < len(want) && pre < len(got) && want[pre] == got[pre] {
		pre++
	}
	suf := 0
	for suf < len(want)-pre && suf < len(got)-pre && want[len(want)-1-suf] == got[len(got)-1-suf] {
		suf++
	}
	w, g := want[pre:len(want)-suf], got[pre:len(got)-suf]
	var out []string
	if pre > 0 {
		out = append(out, fmt.Sprintf("@@ after line %d: %s", pre, want[pre-1]))
	}
	if len(w)*len(g) <= 4_000_000 {
		out = append(out, lcsDiff(w, g)...)
	} else {
		for _, l := range w {
			out = append(out, "-"+l)
		}
		for _, l := range g {
			out = append(out, "+"+l)
		}
	}
	const maxLines = 300
	if len(out) > maxLines {
		n := len(out) - maxLines
		out = append(out[:maxLines], fmt.Sprintf("... %d more diff lines", n))
	}
	return strings.Join(out, "\n")
}

func lcsDiff(a, b []string) []string {
	n, m := len(a), len(b)
	// l[i][j] = length of the LCS of a[i:] and b[j:].
	l := make([][]int32, n+1)
	for i := range l {
		l[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out = append(out, " "+a[i])
			i++
			j++
		case j < m && (i == n || l[i][j+1] >= l[i+1][j]):
			out = append(out, "+"+b[j])
			j++
		default:
			out = append(out, "-"+a[i])
			i++
		}
	}
	return out
}
