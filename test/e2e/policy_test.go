package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// policyRegistries are two registries behind counting proxies: "ours",
// which the policy trusts, and "hub", which stands in for Docker Hub.
type policyRegistries struct {
	ours, hub          string
	oursCnt, hubCnt    *testutil.Counts
	digest             string // of the busybox image both hold
	dir, policy, rules string
}

func startPolicyRegistries(t *testing.T) *policyRegistries {
	t.Helper()
	p := &policyRegistries{}
	oursReg, hubReg := testutil.StartRegistry(t), testutil.StartRegistry(t)
	img := testutil.BusyboxImage(t)
	testutil.PushImage(t, oursReg+"/library/busybox:1", img)
	testutil.PushImage(t, hubReg+"/library/busybox:1", img)
	d, err := img.Digest()
	testutil.Require(t, err)
	p.digest = d.String()
	p.ours, p.oursCnt = testutil.CountingProxy(t, oursReg)
	p.hub, p.hubCnt = testutil.CountingProxy(t, hubReg)
	p.dir = t.TempDir()
	p.policy = filepath.Join(p.dir, "policy.json")
	p.rules = filepath.Join(p.dir, "kiln-policy.json")
	p.write(t, fmt.Sprintf(`{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      %q: [{"type": "insecureAcceptAnything"}],
      %q: [{"type": "reject"}]
    }
  }
}`, p.ours, p.ours+"/quarantine"), fmt.Sprintf(`{"allowPush": [%q]}`, p.ours+"/team"))
	return p
}

func (p *policyRegistries) write(t *testing.T, policy, rules string) {
	t.Helper()
	testutil.Require(t, os.WriteFile(p.policy, []byte(policy), 0o644))
	if rules == "" {
		_ = os.Remove(p.rules)
		return
	}
	testutil.Require(t, os.WriteFile(p.rules, []byte(rules), 0o644))
}

// requests is how many requests both registries have had.
func (p *policyRegistries) requests() int {
	return len(p.oursCnt.Requests()) + len(p.hubCnt.Requests())
}

// refused runs kiln, which must fail with an error naming want (and the
// policy file) without any request reaching either registry.
func (p *policyRegistries) refused(t *testing.T, u *kilnUser, file string, want []string, args ...string) {
	t.Helper()
	before := p.requests()
	r := u.fails(t, args...)
	if n := p.requests() - before; n != 0 {
		t.Errorf("%d requests reached the registries on a refusal:\n%s\n%s\n%s", n, strings.Join(p.oursCnt.Requests(), "\n"), strings.Join(p.hubCnt.Requests(), "\n"), r)
	}
	for _, w := range append(want, file) {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("the error does not say %q:\n%s", w, r)
		}
	}
}

func policyContext(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	testutil.Require(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644))
	testutil.Require(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a\n"), 0o644))
	return dir
}

// TestPolicyReadsAndWrites applies policy.json and kiln-policy.json to
// every way kiln reads and writes images: refused ones send nothing to
// either registry and name the image, the rule and the file.
func TestPolicyReadsAndWrites(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	p := startPolicyRegistries(t)
	newUser := func() *kilnUser {
		u := newKilnUser(t)
		u.setenv("KILN_POLICY", p.policy)
		return u
	}
	hubImg, oursImg := p.hub+"/library/busybox:1", p.ours+"/library/busybox:1"
	hubRule := []string{p.hub + "/library/busybox:1", "rejected", "default"}

	t.Run("pull", func(t *testing.T) {
		u := newUser()
		p.refused(t, u, p.policy, hubRule, "pull", hubImg)
		p.refused(t, u, p.policy, []string{`transports.docker "` + p.ours + `/quarantine"`}, "pull", p.ours+"/quarantine/x:1")
		u.ok(t, "pull", oursImg)
		// The flag wins over KILN_POLICY.
		open := filepath.Join(t.TempDir(), "open.json")
		testutil.Require(t, os.WriteFile(open, []byte(`{"default": [{"type": "insecureAcceptAnything"}]}`), 0o644))
		u.ok(t, "--signature-policy", open, "pull", hubImg)
	})
	t.Run("build", func(t *testing.T) {
		u := newUser()
		p.refused(t, u, p.policy, append(hubRule, "Dockerfile:1", "FROM"), "build", policyContext(t, "FROM "+hubImg+"\nCOPY a.txt /\n"))
		// A refused COPY --from or RUN --mount from image stops the build
		// before its allowed FROM is read.
		p.refused(t, u, p.policy, append(hubRule, "Dockerfile:3", "COPY --from"), "build", policyContext(t, "FROM "+oursImg+"\nCOPY a.txt /\nCOPY --from="+hubImg+" /bin/busybox /b\n"))
		p.refused(t, u, p.policy, append(hubRule, "Dockerfile:2", "RUN --mount from"), "build", policyContext(t, "FROM "+oursImg+"\nRUN --mount=from="+hubImg+",target=/m true\n"))
		u.ok(t, "build", "-t", "app:1", policyContext(t, "FROM "+oursImg+"\nCOPY a.txt /\nCOPY --from="+oursImg+" /bin/busybox /b\n"))
		// --build-context NAME=docker-image://REF is checked as REF.
		p.refused(t, u, p.policy, append(hubRule, "Dockerfile:1"), "build", "--build-context", "base=docker-image://"+hubImg, policyContext(t, "FROM base\nCOPY a.txt /\n"))
		u.ok(t, "build", "--build-context", "base=docker-image://"+oursImg, policyContext(t, "FROM base\nCOPY a.txt /\n"))
		// --cache-from reads, --cache-to writes.
		p.refused(t, u, p.policy, []string{"--cache-from", "rejected"}, "build", "--cache-from", p.hub+"/cache", policyContext(t, "FROM "+oursImg+"\n"))
		p.refused(t, u, p.rules, []string{"--cache-to", "allowPush"}, "build", "--cache-to", p.ours+"/cache", policyContext(t, "FROM "+oursImg+"\n"))
		// build --push to a destination allowPush does not list.
		p.refused(t, u, p.rules, []string{p.ours + "/other/app:1", "allowPush"}, "build", "--push", "-t", p.ours+"/other/app:1", policyContext(t, "FROM "+oursImg+"\n"))
		u.ok(t, "build", "--push", "-t", p.ours+"/team/app:1", "--cache-to", p.ours+"/team/cache", policyContext(t, "FROM "+oursImg+"\nCOPY a.txt /\n"))
	})
	t.Run("push and copy", func(t *testing.T) {
		u := newUser()
		u.ok(t, "pull", oursImg)
		p.refused(t, u, p.rules, []string{p.ours + "/other/busybox:1", "allowPush"}, "push", oursImg, p.ours+"/other/busybox:1")
		u.ok(t, "push", oursImg, p.ours+"/team/busybox:1")
		p.refused(t, u, p.policy, hubRule, "copy", hubImg, p.ours+"/team/copied:1")
		p.refused(t, u, p.rules, []string{"allowPush"}, "copy", oursImg, p.hub+"/library/copied:1")
		u.ok(t, "copy", oursImg, p.ours+"/team/copied:1")
	})
	t.Run("requireDigest", func(t *testing.T) {
		p := *p
		p.dir = t.TempDir()
		p.policy, p.rules = filepath.Join(p.dir, "policy.json"), filepath.Join(p.dir, "kiln-policy.json")
		p.write(t, `{"default": [{"type": "insecureAcceptAnything"}]}`, `{"requireDigest": true}`)
		u := newKilnUser(t)
		u.setenv("KILN_POLICY", p.policy)
		p.refused(t, u, p.rules, []string{"requireDigest", "not pinned by digest", "Dockerfile:1"}, "build", policyContext(t, "FROM "+oursImg+"\n"))
		u.ok(t, "build", policyContext(t, "FROM "+p.ours+"/library/busybox@"+p.digest+"\nCOPY a.txt /\n"))
	})
	t.Run("syntax errors", func(t *testing.T) {
		dir := t.TempDir()
		bad := filepath.Join(dir, "policy.json")
		testutil.Require(t, os.WriteFile(bad, []byte("{\n  \"default\": [{\"type\": \"reject\"}]\n  \"transports\": {}\n}\n"), 0o644))
		u := newKilnUser(t)
		u.setenv("KILN_POLICY", bad)
		p.refused(t, u, bad+":3:3", []string{"invalid JSON"}, "pull", oursImg)
		p.refused(t, u, bad+":3:3", []string{"invalid JSON"}, "build", policyContext(t, "FROM "+oursImg+"\n"))
		p.refused(t, u, bad+":3:3", []string{"invalid JSON"}, "policy", "check", oursImg)
		testutil.Require(t, os.WriteFile(bad, []byte(`{"default": [{"type": "signedBy"}]}`), 0o644))
		p.refused(t, u, bad, []string{"keyType is required"}, "pull", oursImg)
		u.setenv("KILN_POLICY", filepath.Join(dir, "missing.json"))
		p.refused(t, u, "missing.json", []string{"KILN_POLICY"}, "pull", oursImg)
	})
	t.Run("policy check", func(t *testing.T) {
		u := newUser()
		before := p.requests()
		r := u.ok(t, "policy", "check", oursImg, p.ours+"/team/x:1")
		for _, w := range []string{"policy: " + p.policy, "kiln rules: " + p.rules, "read: allowed (transports.docker \"" + p.ours + "\"", "push: allowed (allowPush \"" + p.ours + "/team\""} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("policy check does not say %q:\n%s", w, r)
			}
		}
		r = u.fails(t, "policy", "check", oursImg, hubImg)
		if !strings.Contains(r.stdout, "read: refused: rejected (default, "+p.policy+")") || !strings.Contains(r.stderr, "1 of 2 references refused") {
			t.Errorf("policy check of a refused reference:\n%s", r)
		}
		u.fails(t, "policy", "check", "--push", p.ours+"/other/x:1")
		if n := p.requests() - before; n != 0 {
			t.Errorf("policy check sent %d requests", n)
		}
		// kiln doctor names the files in effect and the command above
		// (its exit status is the sandbox's, not the policy's).
		r = u.run(t, "", "doctor")
		for _, w := range []string{"registry policy: " + p.policy, "kiln rules: " + p.rules, "kiln policy check [--push] REF"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("kiln doctor does not say %q:\n%s", w, r)
			}
		}
	})
}

// TestPolicyMirrorsOnly: under mirrorsOnly Docker Hub is read through the
// mirror only; without a mirror the read is refused before any request.
func TestPolicyMirrorsOnly(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	p := startPolicyRegistries(t)
	p.write(t, `{"default": [{"type": "insecureAcceptAnything"}]}`, `{"mirrorsOnly": true}`)
	u := newKilnUser(t)
	u.setenv("KILN_POLICY", p.policy)
	p.refused(t, u, p.rules, []string{"docker.io/library/busybox:1", "mirrorsOnly", "no --registry-mirror"}, "pull", "busybox:1")
	u.ok(t, "--registry-mirror", "http://"+p.hub, "pull", "busybox:1")
	if len(p.hubCnt.Requests()) == 0 {
		t.Error("the mirror was not read")
	}
	// The mirror lacks the image: the error is the mirror's, Docker Hub is
	// never tried (it cannot be reached from the test; the error would
	// name it).
	r := u.fails(t, "--registry-mirror", "http://"+p.hub, "pull", "busybox:2")
	if !strings.Contains(r.stderr, p.hub) || strings.Contains(r.stderr, "index.docker.io") {
		t.Errorf("a missing image under mirrorsOnly:\n%s", r)
	}
	r = u.fails(t, "--registry-mirror", "http://"+p.hub, "build", policyContext(t, "FROM busybox:2\n"))
	if !strings.Contains(r.stderr, p.hub) || strings.Contains(r.stderr, "index.docker.io") {
		t.Errorf("a missing base under mirrorsOnly:\n%s", r)
	}
}
