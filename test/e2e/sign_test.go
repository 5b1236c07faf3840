package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sign"
)

// signKeys writes a cosign key pair (password "pw") to dir.
func signKeys(t *testing.T, dir, prefix string) (priv, pub string) {
	t.Helper()
	k, p, err := sign.GenerateKeyPair([]byte("pw"))
	testutil.Require(t, err)
	priv, pub = filepath.Join(dir, prefix+".key"), filepath.Join(dir, prefix+".pub")
	testutil.Require(t, os.WriteFile(priv, k, 0o600))
	testutil.Require(t, os.WriteFile(pub, p, 0o644))
	return priv, pub
}

// TestSignVerifyAndPolicy: kiln sign and verify, build --sign-key, and
// policy.json's sigstoreSigned refusing an unsigned (or wrongly signed)
// base before its config or a layer is read.
func TestSignVerifyAndPolicy(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	reg := testutil.StartRegistry(t)
	addr, counts := testutil.CountingProxy(t, reg)
	img := testutil.BusyboxImage(t)
	testutil.PushImage(t, addr+"/base/signed:1", img)
	testutil.PushImage(t, addr+"/base/unsigned:1", img)
	dir := t.TempDir()
	priv, pub := signKeys(t, dir, "cosign")
	_, otherPub := signKeys(t, dir, "other")
	u := newKilnUser(t)
	u.setenv("COSIGN_PASSWORD", "pw")

	r := u.fails(t, "sign", addr+"/base/signed:1")
	if !strings.Contains(r.stderr, "keyless") || !strings.Contains(r.stderr, "--key") {
		t.Errorf("keyless sign:\n%s", r)
	}
	u.setenv("COSIGN_PASSWORD", "wrong")
	r = u.fails(t, "sign", "--key", priv, addr+"/base/signed:1")
	if !strings.Contains(r.stderr, "COSIGN_PASSWORD") {
		t.Errorf("wrong password:\n%s", r)
	}
	u.setenv("COSIGN_PASSWORD", "pw")
	r = u.ok(t, "sign", "--key", priv, addr+"/base/signed:1")
	d, err := img.Digest()
	testutil.Require(t, err)
	sigTag := "sha256-" + d.Hex + ".sig"
	if !strings.Contains(r.stderr, sigTag) {
		t.Errorf("sign does not say where the signature went:\n%s", r)
	}
	r = u.ok(t, "verify", "--key", pub, addr+"/base/signed:1")
	if !strings.Contains(r.stdout, `"docker-manifest-digest":"`+d.String()+`"`) {
		t.Errorf("verify prints no payload:\n%s", r)
	}
	u.fails(t, "verify", "--key", otherPub, addr+"/base/signed:1")
	r = u.fails(t, "verify", "--key", pub, addr+"/base/unsigned:1")
	if !strings.Contains(r.stderr, "no signatures") {
		t.Errorf("verify of an unsigned image:\n%s", r)
	}

	// policy.json: base/ must be signed by cosign.pub.
	pol := filepath.Join(dir, "policy.json")
	keyData := func(p string) string {
		b, err := os.ReadFile(p)
		testutil.Require(t, err)
		return base64.StdEncoding.EncodeToString(b)
	}
	writePolicy := func(req string) {
		testutil.Require(t, os.WriteFile(pol, []byte(fmt.Sprintf(`{"default": [{"type": "insecureAcceptAnything"}],
  "transports": {"docker": {%q: [%s]}}}`, addr+"/base", req)), 0o644))
	}
	writePolicy(`{"type": "sigstoreSigned", "keyPath": "` + pub + `", "signedIdentity": {"type": "matchRepository"}}`)
	u.setenv("KILN_POLICY", pol)
	ctxDir := func(from string) string { return policyContext(t, "FROM "+from+"\nCOPY a.txt /\n") }
	u.ok(t, "build", "-t", "app:1", ctxDir(addr+"/base/signed:1"))
	u.ok(t, "pull", addr+"/base/signed:1")
	configGets := func() int { return counts.BlobGets(mustConfig(t, img)) }
	before := configGets()
	for _, args := range [][]string{
		{"build", ctxDir(addr + "/base/unsigned:1")},
		{"pull", addr + "/base/unsigned:1"},
		{"copy", addr + "/base/unsigned:1", addr + "/elsewhere/x:1"},
	} {
		r := u.fails(t, args...)
		if !strings.Contains(r.stderr, "no signatures") || !strings.Contains(r.stderr, "sigstoreSigned") || !strings.Contains(r.stderr, pol) {
			t.Errorf("an unsigned image under sigstoreSigned:\n%s", r)
		}
	}
	// Signed, but by another key; keyData instead of keyPath.
	writePolicy(`{"type": "sigstoreSigned", "keyData": "` + keyData(otherPub) + `", "signedIdentity": {"type": "matchRepository"}}`)
	r = u.fails(t, "build", "--pull", ctxDir(addr+"/base/signed:1"))
	if !strings.Contains(r.stderr, "no given key verifies it") {
		t.Errorf("a signature by another key:\n%s", r)
	}
	if n := configGets() - before; n != 0 {
		t.Errorf("the config of a refused image was read %d times", n)
	}
	// The default identity rule (matchRepoDigestOrExact) refuses cosign's
	// repository-only identity for a tag, accepts it for a digest.
	writePolicy(`{"type": "sigstoreSigned", "keyPath": "` + pub + `"}`)
	u.fails(t, "pull", addr+"/base/signed:1")
	u.ok(t, "pull", addr+"/base/signed@"+d.String())
	// Keyless requirements are refused with a clear error.
	writePolicy(`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca.pem", "oidcIssuer": "https://x", "subjectEmail": "a@b"}, "rekorPublicKeyPath": "/r.pub"}`)
	r = u.fails(t, "pull", addr+"/base/signed:1")
	if !strings.Contains(r.stderr, "keyless") {
		t.Errorf("keyless policy:\n%s", r)
	}

	// build --push --sign-key signs what it pushes; verify and the policy
	// accept it.
	u.setenv("KILN_POLICY", "")
	r = u.ok(t, "build", "--push", "--sign-key", priv, "-t", addr+"/team/app:1", ctxDir(addr+"/base/signed:1"))
	if !strings.Contains(r.stderr, "Pushed signature") {
		t.Errorf("build --sign-key:\n%s", r)
	}
	u.ok(t, "verify", "--key", pub, addr+"/team/app:1")
	r = u.fails(t, "build", "--sign-key", priv, ctxDir(addr+"/base/signed:1"))
	if !strings.Contains(r.stderr, "--push") {
		t.Errorf("--sign-key without --push:\n%s", r)
	}
}

func mustConfig(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	testutil.Require(t, err)
	return h.String()
}
