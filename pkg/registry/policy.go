package registry

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/policy"
)

// SignatureVerifier checks that the image digest, as ref names it, is
// signed as every requirement says, reading the signatures from repository
// from (ref's, or the mirror's the image is read from). pkg/sign
// implements it. c is the caller's Client without a policy.
type SignatureVerifier func(ctx context.Context, ref name.Reference, from name.Repository, digest v1.Hash, reqs []policy.Requirement, c *Client) error

// sigCheck is what the policy wants verified of an image once its digest
// is known (nil: nothing).
type sigCheck struct {
	ref  name.Reference
	reqs []policy.Requirement
}

// allowRead asks o.Policy whether ref may be read, before any request; it
// returns the signature requirements to check once the digest is known.
func (o Options) allowRead(ref name.Reference) (*sigCheck, error) {
	reqs, err := o.Policy.CheckRead(ref)
	if err != nil || len(reqs) == 0 {
		return nil, err
	}
	if o.VerifySignatures == nil {
		return nil, &policy.Violation{Image: policy.Identity(ref), Rule: "sigstoreSigned", File: o.Policy.Path,
			Reason: "needs a verified signature, and this command cannot verify signatures"}
	}
	return &sigCheck{ref: ref, reqs: reqs}, nil
}

// verify checks the signatures sc asks for of digest, read from the
// repository of from (the mirror the image came from, if it did).
func (c *Client) verify(ctx context.Context, sc *sigCheck, from name.Reference, digest v1.Hash) error {
	if sc == nil {
		return nil
	}
	if err := c.o.VerifySignatures(ctx, sc.ref, from.Context(), digest, sc.reqs, c.WithoutPolicy()); err != nil {
		return fmt.Errorf("policy: %s@%s: %w (sigstoreSigned, %s)", policy.DockerName(sc.ref.Context()), digest, err, c.o.Policy.Path)
	}
	return nil
}

// allowWrite asks o.Policy whether every ref may be written, before any
// request.
func (o Options) allowWrite(refs []name.Reference) error {
	for _, r := range refs {
		if err := o.Policy.CheckWrite(r); err != nil {
			return err
		}
	}
	return nil
}

// readCands is readRefs once the policy allows ref: where ref may be read
// from, in order, and the signatures to verify. Under the policy's
// mirrorsOnly a Docker Hub reference is read from the mirrors alone (no
// mirror is an error).
func (o Options) readCands(ref name.Reference) ([]name.Reference, *sigCheck, error) {
	reqs, err := o.allowRead(ref)
	if err != nil {
		return nil, nil, err
	}
	cands := o.readRefs(ref)
	if o.Policy.MirrorsOnly() && canonicalHost(ref.Context().RegistryStr()) == dockerHubRegistry {
		if len(cands) == 1 {
			return nil, nil, o.Policy.MirrorsOnlyViolation(ref)
		}
		cands = cands[:len(cands)-1]
	}
	return cands, reqs, nil
}
