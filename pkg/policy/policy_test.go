package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func write(t *testing.T, dir, file, content string) string {
	t.Helper()
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScopesOrder(t *testing.T) {
	got := Scopes(ref(t, "registry.eu.example.com:5000/team/app/web:1.2"))
	want := []string{
		"registry.eu.example.com:5000/team/app/web:1.2",
		"registry.eu.example.com:5000/team/app/web",
		"registry.eu.example.com:5000/team/app",
		"registry.eu.example.com:5000/team",
		"registry.eu.example.com:5000",
		"*.eu.example.com", "*.example.com", "*.com",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scopes:\n got %q\nwant %q", got, want)
	}
	if got := Scopes(ref(t, "busybox"))[0]; got != "docker.io/library/busybox:latest" {
		t.Errorf("Docker Hub identity %q, want docker.io/library/busybox:latest", got)
	}
}

const sample = `{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "ours.example.com": [{"type": "insecureAcceptAnything"}],
      "ours.example.com/quarantine": [{"type": "reject"}],
      "ours.example.com/quarantine/ok:1": [{"type": "insecureAcceptAnything"}],
      "*.example.org": [{"type": "insecureAcceptAnything"}],
      "signed.example.com": [{"type": "sigstoreSigned", "keyPath": "/k.pub", "signedIdentity": {"type": "matchRepository"}}],
      "keyless.example.com": [{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca"}, "rekorPublicKeyPath": "/r"}],
      "gpg.example.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]
    },
    "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
  }
}`

func TestCheckRead(t *testing.T) {
	dir := t.TempDir()
	p, err := ReadFile(write(t, dir, "policy.json", sample))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref, rule string
		ok        bool
		verify    int
	}{
		{"ours.example.com/team/app:1", `transports.docker "ours.example.com"`, true, 0},
		{"ours.example.com/quarantine/bad:1", `transports.docker "ours.example.com/quarantine"`, false, 0},
		{"ours.example.com/quarantine/ok:1", `transports.docker "ours.example.com/quarantine/ok:1"`, true, 0},
		{"ours.example.com/quarantine/ok:2", `transports.docker "ours.example.com/quarantine"`, false, 0},
		{"a.b.example.org/x", `transports.docker "*.example.org"`, true, 0},
		{"example.org/x", "default", false, 0},
		{"busybox", "default", false, 0},
		{"signed.example.com/x:1", `transports.docker "signed.example.com"`, true, 1},
		{"keyless.example.com/x:1", `transports.docker "keyless.example.com"`, false, 0},
		{"gpg.example.com/x:1", `transports.docker "gpg.example.com"`, false, 0},
	} {
		r := ref(t, c.ref)
		if m := p.Match(r); m.Rule != c.rule {
			t.Errorf("%s: rule %s, want %s", c.ref, m.Rule, c.rule)
		}
		verify, err := p.CheckRead(r)
		if (err == nil) != c.ok || len(verify) != c.verify {
			t.Errorf("%s: CheckRead = %d requirements, %v; want ok=%v, %d", c.ref, len(verify), err, c.ok, c.verify)
			continue
		}
		if err != nil {
			var v *Violation
			if !errors.As(err, &v) || !strings.Contains(err.Error(), c.rule) || !strings.Contains(err.Error(), p.Path) || !strings.Contains(err.Error(), Identity(r)) {
				t.Errorf("%s: error %q does not name the image, the rule and the file", c.ref, err)
			}
		}
	}
	if _, err := p.CheckRead(ref(t, "keyless.example.com/x")); err == nil || !strings.Contains(err.Error(), "keyless") {
		t.Errorf("keyless: %v, want a clear error", err)
	}
}

func TestRules(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, RulesFile, `{"allowPush": ["ours.example.com/team", "*.ecr.aws"], "requireDigest": true, "mirrorsOnly": true}`)
	p, err := ReadFile(write(t, dir, "policy.json", `{"default": [{"type": "insecureAcceptAnything"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckWrite(ref(t, "ours.example.com/team/app:1")); err != nil {
		t.Error(err)
	}
	if err := p.CheckWrite(ref(t, "x.ecr.aws/team/app:1")); err != nil {
		t.Error(err)
	}
	err = p.CheckWrite(ref(t, "ours.example.com/other/app:1"))
	if err == nil || !strings.Contains(err.Error(), "allowPush") || !strings.Contains(err.Error(), filepath.Join(dir, RulesFile)) {
		t.Errorf("push elsewhere: %v", err)
	}
	if err := p.CheckPinned(ref(t, "busybox:1")); err == nil || !strings.Contains(err.Error(), "requireDigest") {
		t.Errorf("unpinned: %v", err)
	}
	if err := p.CheckPinned(ref(t, "busybox@sha256:"+strings.Repeat("a", 64))); err != nil {
		t.Errorf("pinned: %v", err)
	}
	if !p.MirrorsOnly() {
		t.Error("mirrorsOnly not read")
	}
	// An empty allowPush allows no destination; none allows all.
	write(t, dir, RulesFile, `{"allowPush": []}`)
	if p, err = ReadFile(filepath.Join(dir, "policy.json")); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckWrite(ref(t, "ours.example.com/team/app:1")); err == nil {
		t.Error("an empty allowPush allowed a push")
	}
	var none *Policy
	if err := none.CheckWrite(ref(t, "x/y")); err != nil {
		t.Error(err)
	}
}

func TestSyntaxErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ content, want string }{
		{"{\n  \"default\": [{\"type\": \"reject\"}\n  \"transports\": {}}", "policy.json:3:3: invalid JSON"},
		{"{\"default\": [{\"type\": \"reject\"}],\n \"kiln\": {}}", `policy.json:2:2: unknown key "kiln"`},
		{"{\"transports\": {}}", `no "default"`},
		{"{\"default\": []}", "must not be empty"},
		{"{\"default\": [{\"type\": \"maybe\"}]}", "unknown requirement type"},
		{"{\"default\": [{\"type\": \"reject\", \"keyPath\": \"/k\"}]}", "takes no other keys"},
		{"{\"default\": [{\"type\": \"sigstoreSigned\"}]}", "exactly one of keyPath"},
		{"{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"docker\": {\"https://x\": [{\"type\": \"reject\"}]}}}", "HOST[:PORT]"},
		{"{\"default\": [{\"type\": 1}]}", "policy.json:1:24: default.type: want string"},
		{"", "empty or truncated"},
		{"{\"default\": [{\"type\": \"reject\"}]} {}", "unexpected data"},
	} {
		path := write(t, dir, "policy.json", c.content)
		_, err := ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: error %v, want it to name %s and say %q", c.content, err, path, c.want)
		}
	}
	write(t, dir, "policy.json", `{"default": [{"type": "reject"}]}`)
	write(t, dir, RulesFile, `{"allowPush": "ours"}`)
	if _, err := ReadFile(filepath.Join(dir, "policy.json")); err == nil || !strings.Contains(err.Error(), RulesFile+":1:21: allowPush") {
		t.Errorf("kiln rules type error: %v", err)
	}
	b := Broken(errors.New("boom"))
	if _, err := b.CheckRead(ref(t, "x/y")); err == nil || b.CheckWrite(ref(t, "x/y")) == nil || b.CheckPinned(ref(t, "x/y")) == nil {
		t.Error("a broken policy allowed something")
	}
}

func TestLocate(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"HOME": home}
	getenv := func(k string) string { return env[k] }
	if err := os.MkdirAll(filepath.Join(home, ".config", "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	user := write(t, filepath.Join(home, ".config", "containers"), "policy.json", `{"default": [{"type": "reject"}]}`)
	if p, err := Locate("", getenv); err != nil || p != user {
		t.Errorf("user policy: %q %v", p, err)
	}
	env["KILN_POLICY"] = write(t, home, "env.json", "{}")
	if p, err := Locate("", getenv); err != nil || p != env["KILN_POLICY"] {
		t.Errorf("KILN_POLICY: %q %v", p, err)
	}
	if p, err := Locate(user, getenv); err != nil || p != user {
		t.Errorf("flag: %q %v", p, err)
	}
	if _, err := Locate(filepath.Join(home, "missing.json"), getenv); err == nil || !strings.Contains(err.Error(), "--signature-policy") {
		t.Errorf("missing flag file: %v", err)
	}
}
