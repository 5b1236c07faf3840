package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/sign"
)

// referrersTag reads the referrers tag index (sha256-<hex>) of digest in
// repo, as clients without the referrers API keep it.
func referrersTag(t *testing.T, repo string, digest v1.Hash) *v1.IndexManifest {
	t.Helper()
	ref, err := name.ParseReference(repo + ":" + digest.Algorithm + "-" + digest.Hex)
	testutil.Require(t, err)
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("referrers tag %s: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	testutil.Require(t, err)
	return im
}

// TestReferrersForm: on Debian's docker-registry (no referrers API, so the
// referrers tag schema) kiln signs in cosign's OCI 1.1 form and verifies
// it; cosign verifies kiln's and kiln verifies cosign's (both in
// oci-1-1 mode); build --sign-referrers-mode=oci-1-1 and oci-artifact=true
// push the signature and the attestation manifest as referrers of the
// image.
func TestReferrersForm(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	reg := testutil.StartRegistry(t)
	img := testutil.BusyboxImage(t)
	testutil.PushImage(t, reg+"/team/a:1", img)
	testutil.PushImage(t, reg+"/team/b:1", img)
	d, err := img.Digest()
	testutil.Require(t, err)
	dir := t.TempDir()
	priv, pub := signKeys(t, dir, "kiln")
	u := newKilnUser(t)
	u.setenv("COSIGN_PASSWORD", "pw")

	r := u.fails(t, "sign", "--key", priv, "--registry-referrers-mode=oci-2", reg+"/team/a:1")
	if !strings.Contains(r.stderr, "oci-1-1") {
		t.Errorf("a bad --registry-referrers-mode:\n%s", r)
	}
	r = u.ok(t, "sign", "--key", priv, "--registry-referrers-mode=oci-1-1", reg+"/team/a:1")
	if !strings.Contains(r.stderr, "referrer") {
		t.Errorf("sign does not say the signature is a referrer:\n%s", r)
	}
	// No .sig tag; the referrers tag lists one cosign signature.
	if _, err := remote.Head(mustRef(t, reg+"/team/a:"+sign.SignatureTag(mustRepo(t, reg+"/team/a"), d).TagStr())); err == nil {
		t.Error("oci-1-1 mode wrote the legacy .sig tag")
	}
	im := referrersTag(t, reg+"/team/a", d)
	if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != string(sign.SignatureArtifactType) {
		t.Fatalf("referrers tag: %+v", im.Manifests)
	}
	r = u.ok(t, "verify", "--key", pub, reg+"/team/a:1")
	if !strings.Contains(r.stdout, `"docker-manifest-digest":"`+d.String()+`"`) {
		t.Errorf("verify of a referrer signature:\n%s", r)
	}
	_, otherPub := signKeys(t, dir, "other")
	r = u.fails(t, "verify", "--key", otherPub, reg+"/team/a:1")
	if !strings.Contains(r.stderr, "referrer "+im.Manifests[0].Digest.String()) {
		t.Errorf("verify with another key names no referrer:\n%s", r)
	}

	if cosign := cosignBinary(); cosign != "" {
		runCosign := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, cosign, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=pw", "COSIGN_EXPERIMENTAL=1", "HOME="+dir, "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		out := runCosign("verify", "--key", pub, "--experimental-oci11", "--insecure-ignore-tlog=true", "--allow-http-registry", reg+"/team/a:1")
		if !strings.Contains(out, d.String()) {
			t.Errorf("cosign verify --experimental-oci11 of kiln's referrer signature:\n%s", out)
		}
		runCosign("sign", "--key", priv, "--registry-referrers-mode=oci-1-1", "--tlog-upload=false", "--allow-http-registry", "-y", reg+"/team/b@"+d.String())
		r = u.ok(t, "verify", "--key", pub, reg+"/team/b:1")
		if !strings.Contains(r.stdout, d.String()) {
			t.Errorf("kiln verify of cosign's oci-1-1 signature:\n%s", r)
		}
	} else {
		t.Log("cosign is not installed: the cosign half is not run")
	}

	// build: the signature and the attestation manifest as referrers.
	ctxDir := policyContext(t, "FROM "+reg+"/team/a:1\nCOPY a.txt /\n")
	r = u.fails(t, "build", "--sign-referrers-mode=oci-1-1", ctxDir)
	if !strings.Contains(r.stderr, "--sign-key") {
		t.Errorf("--sign-referrers-mode without --sign-key:\n%s", r)
	}
	ref := reg + "/team/app:1"
	u.ok(t, "build", "--provenance=true", "--sign-key", priv, "--sign-referrers-mode=oci-1-1",
		"--output", "type=registry,name="+ref+",oci-artifact=true", ctxDir)
	idx, err := remote.Index(mustRef(t, ref))
	testutil.Require(t, err)
	top, err := idx.Digest()
	testutil.Require(t, err)
	tim, err := idx.IndexManifest()
	testutil.Require(t, err)
	if len(tim.Manifests) != 2 {
		t.Fatalf("pushed index: %+v", tim.Manifests)
	}
	image, att := tim.Manifests[0], tim.Manifests[1]
	am := referrersTag(t, reg+"/team/app", image.Digest)
	if len(am.Manifests) != 1 || am.Manifests[0].Digest != att.Digest || am.Manifests[0].ArtifactType != attest.AttestationArtifactType {
		t.Errorf("the image's referrers tag does not list its attestation manifest %s: %+v", att.Digest, am.Manifests)
	}
	raw, err := remote.Get(mustRef(t, reg+"/team/app@"+att.Digest.String()))
	testutil.Require(t, err)
	var m v1.Manifest
	testutil.Require(t, json.Unmarshal(raw.Manifest, &m))
	if m.Subject == nil || m.Subject.Digest != image.Digest || m.ArtifactType != attest.AttestationArtifactType {
		t.Errorf("attestation manifest:\n%s", raw.Manifest)
	}
	sm := referrersTag(t, reg+"/team/app", top)
	if len(sm.Manifests) != 1 || sm.Manifests[0].ArtifactType != string(sign.SignatureArtifactType) {
		t.Errorf("the index's referrers tag: %+v", sm.Manifests)
	}
	u.ok(t, "verify", "--key", pub, ref)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	testutil.Require(t, err)
	return r
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	testutil.Require(t, err)
	return r
}

// TestCopyCarriesAttachments: kiln copy between two registries carries the
// legacy .sig tag, signature referrers and attestation referrers (the
// destination's referrers tags list them), as cosign copy does;
// --remove-signatures leaves the signatures behind, --attachments=false
// everything but the image, and --all-tags carries the referrers of each
// tag.
func TestCopyCarriesAttachments(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	reg1, reg2 := testutil.StartRegistry(t), testutil.StartRegistry(t)
	testutil.PushImage(t, reg1+"/base/busybox:1", testutil.BusyboxImage(t))
	dir := t.TempDir()
	priv, pub := signKeys(t, dir, "kiln")
	u := newKilnUser(t)
	u.setenv("COSIGN_PASSWORD", "pw")
	src := reg1 + "/team/app:1"
	u.ok(t, "build", "--provenance=true", "--sign-key", priv, "--output", "type=registry,name="+src+",oci-artifact=true",
		policyContext(t, "FROM "+reg1+"/base/busybox:1\nCOPY a.txt /\n"))
	u.ok(t, "sign", "--key", priv, "--registry-referrers-mode=oci-1-1", src)
	idx, err := remote.Index(mustRef(t, src))
	testutil.Require(t, err)
	top, err := idx.Digest()
	testutil.Require(t, err)
	im, err := idx.IndexManifest()
	testutil.Require(t, err)
	image, att := im.Manifests[0].Digest, im.Manifests[1].Digest
	sigTag := "sha256-" + top.Hex + ".sig"

	hasTag := func(repo, tag string) bool {
		_, err := remote.Head(mustRef(t, repo+":"+tag))
		return err == nil
	}
	referrers := func(repo string, d v1.Hash) map[string]string {
		out := map[string]string{}
		if !hasTag(repo, d.Algorithm+"-"+d.Hex) {
			return out
		}
		for _, m := range referrersTag(t, repo, d).Manifests {
			out[m.Digest.String()] = m.ArtifactType
		}
		return out
	}
	countType := func(m map[string]string, typ string) int {
		n := 0
		for _, v := range m {
			if v == typ {
				n++
			}
		}
		return n
	}

	// Everything travels by default.
	dst := reg2 + "/prod/app"
	r := u.ok(t, "copy", src, dst+":1")
	if !strings.Contains(r.stderr, "Copied signature") {
		t.Errorf("copy does not say it copied the signatures:\n%s", r)
	}
	if !hasTag(dst, sigTag) {
		t.Errorf("the .sig tag did not travel")
	}
	if got := referrers(dst, top); countType(got, string(sign.SignatureArtifactType)) != 1 {
		t.Errorf("the signature referrer did not travel: %v", got)
	}
	if got := referrers(dst, image); got[att.String()] != attest.AttestationArtifactType {
		t.Errorf("the attestation referrer did not travel: %v", got)
	}
	// Signatures name the source repository: a policy for promoted images
	// says so with exactRepository, and accepts both forms there.
	pol := filepath.Join(dir, "policy.json")
	testutil.Require(t, os.WriteFile(pol, []byte(`{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"`+dst+`": [
  {"type": "sigstoreSigned", "keyPath": "`+pub+`", "signedIdentity": {"type": "exactRepository", "dockerRepository": "`+reg1+`/team/app"}}]}}}`), 0o644))
	u.ok(t, "--signature-policy", pol, "pull", dst+":1")
	// kiln verify, as cosign verify, checks the key and the digest, not the
	// repository the signature names: a promoted image verifies.
	u.ok(t, "verify", "--key", pub, dst+":1")
	if cosign := cosignBinary(); cosign != "" {
		for _, extra := range [][]string{nil, {"--experimental-oci11"}} {
			args := append([]string{"verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry"}, extra...)
			cmd := exec.Command(cosign, append(args, dst+":1")...)
			cmd.Env = append(os.Environ(), "COSIGN_EXPERIMENTAL=1", "HOME="+dir, "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("cosign %v at the destination: %v\n%s", extra, err, out)
			}
		}
	}

	// --remove-signatures: the attestation, no signature.
	clean := reg2 + "/clean/app"
	u.ok(t, "copy", "--remove-signatures", src, clean+":1")
	if hasTag(clean, sigTag) || countType(referrers(clean, top), string(sign.SignatureArtifactType)) != 0 {
		t.Errorf("--remove-signatures copied a signature: %v", referrers(clean, top))
	}
	if got := referrers(clean, image); got[att.String()] != attest.AttestationArtifactType {
		t.Errorf("--remove-signatures lost the attestation referrer: %v", got)
	}
	r = u.fails(t, "verify", "--key", pub, clean+":1")
	if !strings.Contains(r.stderr, "no signatures") {
		t.Errorf("verify after --remove-signatures:\n%s", r)
	}
	// --attachments=false: the image alone.
	bare := reg2 + "/bare/app"
	u.ok(t, "copy", "--attachments=false", src, bare+":1")
	if hasTag(bare, sigTag) || len(referrers(bare, top)) != 0 {
		t.Errorf("--attachments=false copied attachments")
	}
	// --all-tags --remove-signatures: the tags, the attestation, no
	// signature tag and no signature referrer.
	all := reg2 + "/all/app"
	u.ok(t, "copy", "--all-tags", "--remove-signatures", reg1+"/team/app", all)
	if !hasTag(all, "1") || hasTag(all, sigTag) || countType(referrers(all, top), string(sign.SignatureArtifactType)) != 0 {
		t.Errorf("--all-tags --remove-signatures: tag 1 %v, .sig %v, referrers %v", hasTag(all, "1"), hasTag(all, sigTag), referrers(all, top))
	}
	if got := referrers(all, image); got[att.String()] != attest.AttestationArtifactType {
		t.Errorf("--all-tags lost the attestation referrer: %v", got)
	}
}
