package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/build"
)

func TestParseSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "npmrc")
	if err := os.WriteFile(file, []byte("//registry/:_authToken=x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TOKEN", "tok")
	t.Setenv("tok", "from-env")
	for _, tc := range []struct {
		in     string
		id     string
		secret build.Secret
	}{
		{"id=npmrc,src=" + file, "npmrc", build.Secret{File: file}},
		{"id=npmrc,source=" + file + ",type=file", "npmrc", build.Secret{File: file}},
		{"id=token,env=KILN_TOKEN", "token", build.Secret{Env: "KILN_TOKEN"}},
		{"id=KILN_TOKEN,type=env", "KILN_TOKEN", build.Secret{Env: "KILN_TOKEN"}},
		{"id=tok", "tok", build.Secret{Env: "tok"}},
	} {
		id, sec, err := parseSecret(tc.in)
		if err != nil || id != tc.id || sec != tc.secret {
			t.Errorf("%s: %s %+v %v, want %s %+v", tc.in, id, sec, err, tc.id, tc.secret)
		}
	}
	for in, want := range map[string]string{
		"src=" + file:                          "no id",
		"id=x,src=" + dir:                      "is a directory",
		"id=x,src=/nonexistent/file":           "no such file",
		"id=x,env=KILN_UNSET_VAR":              "KILN_UNSET_VAR is not set",
		"id=x,src=" + file + ",env=KILN_TOKEN": "cannot both",
		"id=x,type=ssh":                        "type must be",
		"id=x,colour=red":                      "unknown field",
		"justtext":                             "KEY=VALUE",
	} {
		if _, _, err := parseSecret(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}
