package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
)

// cosignBinary finds cosign (PATH, then $GOPATH/bin, where `go install
// github.com/sigstore/cosign/v2/cmd/cosign@VERSION` puts it).
func cosignBinary() string {
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "cosign")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestCosignInterop: cosign verifies what kiln signs (with a key cosign
// made), and kiln verifies what cosign signs (with a key kiln made).
func TestCosignInterop(t *testing.T) {
	testutil.SkipIfShort(t)
	cosign := cosignBinary()
	if cosign == "" {
		t.Skip("cosign is not installed (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1)")
	}
	t.Parallel()
	reg := testutil.StartRegistry(t)
	img := testutil.BusyboxImage(t)
	testutil.PushImage(t, reg+"/team/a:1", img)
	testutil.PushImage(t, reg+"/team/b:1", img)
	d, err := img.Digest()
	testutil.Require(t, err)
	dir := t.TempDir()
	runCosign := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=pw", "HOME="+dir, "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	runCosign("generate-key-pair")
	u := newKilnUser(t)
	u.setenv("COSIGN_PASSWORD", "pw")
	// kiln signs with cosign's key; cosign verifies.
	u.ok(t, "sign", "--key", filepath.Join(dir, "cosign.key"), reg+"/team/a:1")
	out := runCosign("verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", reg+"/team/a:1")
	if !strings.Contains(out, d.String()) {
		t.Errorf("cosign verify of kiln's signature:\n%s", out)
	}
	// cosign signs with kiln's key; kiln verifies.
	priv, pub := signKeys(t, dir, "kiln")
	runCosign("sign", "--key", priv, "--tlog-upload=false", "--allow-http-registry", "-y", reg+"/team/b@"+d.String())
	r := u.ok(t, "verify", "--key", pub, reg+"/team/b:1")
	if !strings.Contains(r.stdout, d.String()) {
		t.Errorf("kiln verify of cosign's signature:\n%s", r)
	}
	// And the policy accepts cosign's signature.
	pol := filepath.Join(dir, "policy.json")
	testutil.Require(t, os.WriteFile(pol, []byte(`{"default": [{"type": "reject"}], "transports": {"docker": {"`+reg+`/team/b": [{"type": "sigstoreSigned", "keyPath": "`+pub+`", "signedIdentity": {"type": "matchRepository"}}]}}}`), 0o644))
	u.ok(t, "--signature-policy", pol, "pull", reg+"/team/b:1")
	u.fails(t, "--signature-policy", pol, "pull", reg+"/team/a:1")
}
