package cli

import (
	"net"
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
	comma := filepath.Join(dir, "a,b")
	if err := os.WriteFile(comma, []byte("x"), 0o600); err != nil {
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
		{`id=c,"src=` + comma + `"`, "c", build.Secret{File: comma}},
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

func TestParseSSH(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("SSH_AUTH_SOCK", sock)
	if id, s, err := parseSSH("default"); err != nil || id != "default" || s != sock {
		t.Errorf("default: %s %s %v", id, s, err)
	}
	if id, s, err := parseSSH("deploy=" + sock); err != nil || id != "deploy" || s != sock {
		t.Errorf("deploy=SOCK: %s %s %v", id, s, err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	os.WriteFile(key, []byte("key"), 0o600)
	for in, want := range map[string]string{"=x": "no id", "default=" + key: "not a socket", "x=/nonexistent.sock": "no such file"} {
		if _, _, err := parseSSH(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, _, err := parseSSH("default"); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK is not set") {
		t.Errorf("no agent: %v", err)
	}
}
