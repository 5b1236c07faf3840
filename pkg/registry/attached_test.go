package registry

import (
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
)

// TestCopyAttached: cosign's tags and OCI 1.1 referrers travel with an
// image from a registry with the referrers API to one without (where the
// referrers tag then lists them) and back; NoSignatures leaves the
// signatures behind.
func TestCopyAttached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := Options{}
	c := New(o)
	api, noAPI := testutil.StartReferrersRegistry(t), testutil.StartInProcessRegistry(t)
	img, err := random.Image(64, 1)
	testutil.Require(t, err)
	src := mustRef(t, api+"/team/app:1", o)
	desc, err := c.Write(ctx, img, []name.Reference{src})
	testutil.Require(t, err)
	d := desc.Digest
	// A legacy .sig tag, a signature referrer and an attestation referrer
	// (with a referrer of its own).
	sig, _ := random.Image(16, 1)
	_, err = c.Write(ctx, sig, []name.Reference{src.Context().Tag("sha256-" + d.Hex + ".sig")})
	testutil.Require(t, err)
	referrer := func(subject v1.Descriptor, artifactType string) v1.Descriptor {
		r, _ := random.Image(16, 1)
		r = mutate.Subject(mutate.ConfigMediaType(r, types.MediaType(artifactType)), subject).(v1.Image)
		rd, err := r.Digest()
		testutil.Require(t, err)
		got, err := c.Write(ctx, r, []name.Reference{src.Context().Digest(rd.String())})
		testutil.Require(t, err)
		return got
	}
	sigRef := referrer(desc, CosignSignatureArtifactType)
	attRef := referrer(desc, "application/vnd.example.attestation")
	attSig := referrer(attRef, CosignSignatureArtifactType)

	for _, tc := range []struct {
		name    string
		from    name.Repository
		to      name.Repository
		noSigs  bool
		want    []v1.Hash
		sigTag  bool
		nestSig bool
	}{
		{name: "api to tag", from: src.Context(), to: mustRef(t, noAPI+"/prod/app:1", o).Context(), want: []v1.Hash{sigRef.Digest, attRef.Digest}, sigTag: true, nestSig: true},
		{name: "no signatures", from: src.Context(), to: mustRef(t, noAPI+"/clean/app:1", o).Context(), noSigs: true, want: []v1.Hash{attRef.Digest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Copy(ctx, tc.from.Digest(d.String()), []name.Reference{tc.to.Digest(d.String())}); err != nil {
				t.Fatal(err)
			}
			var kinds []string
			err := c.CopyAttached(ctx, tc.from, tc.to, d, AttachedOptions{NoSignatures: tc.noSigs}, func(a Attached) { kinds = append(kinds, a.Kind) })
			if err != nil {
				t.Fatal(err)
			}
			refs, err := c.Referrers(ctx, tc.to, d, "")
			testutil.Require(t, err)
			if got := digests(refs); !equalHashes(got, tc.want) {
				t.Errorf("referrers at the destination: %v, want %v (copied %v)", got, tc.want, kinds)
			}
			_, err = c.Fetch(ctx, tc.to.Tag("sha256-"+d.Hex+".sig"))
			if tc.sigTag != (err == nil) {
				t.Errorf(".sig tag at the destination: %v", err)
			}
			nested, err := c.Referrers(ctx, tc.to, attRef.Digest, "")
			testutil.Require(t, err)
			if tc.nestSig != (len(nested) == 1 && nested[0].Digest == attSig.Digest) {
				t.Errorf("the attestation's own signature at the destination: %v", nested)
			}
		})
	}
	// Back from the referrers tag to a registry with the API.
	back := mustRef(t, api+"/back/app:1", o).Context()
	from := mustRef(t, noAPI+"/prod/app:1", o).Context()
	if _, err := c.Copy(ctx, from.Digest(d.String()), []name.Reference{back.Digest(d.String())}); err != nil {
		t.Fatal(err)
	}
	testutil.Require(t, c.CopyAttached(ctx, from, back, d, AttachedOptions{}, nil))
	refs, err := c.Referrers(ctx, back, d, "")
	testutil.Require(t, err)
	if got := digests(refs); !equalHashes(got, []v1.Hash{sigRef.Digest, attRef.Digest}) {
		t.Errorf("referrers after the way back: %v", got)
	}
	if _, err := c.Fetch(ctx, ReferrersTag(back, d)); !errors.Is(err, ErrManifestUnknown) {
		t.Errorf("a referrers tag was written on a registry with the API: %v", err)
	}
}

func digests(ds []v1.Descriptor) []v1.Hash {
	var out []v1.Hash
	for _, d := range ds {
		out = append(out, d.Digest)
	}
	return out
}

func equalHashes(a, b []v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	as, bs := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		as[i], bs[i] = a[i].String(), b[i].String()
	}
	sort.Strings(as)
	sort.Strings(bs)
	for i := range as {
		if as[i] != bs[i] {
			return false
		}
	}
	return true
}
