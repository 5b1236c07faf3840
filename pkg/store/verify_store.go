package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Verify checks the whole store: every blob's content hashes to its name,
// and every ref resolves to a manifest whose configs and layers are all
// stored (or, for layers left in a registry, have a recorded source). It
// returns every problem found, joined. A crash at any point of any kiln
// command must leave a store that passes it (test/security's kill suite).
func (s *Store) Verify(ctx context.Context) error {
	var errs []error
	ents, err := os.ReadDir(s.blobDir)
	if err != nil {
		return fmt.Errorf("verifying store %s: %w", s.root, err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if checkHash(h) != nil || !e.Type().IsRegular() {
			errs = append(errs, fmt.Errorf("blobs/sha256/%s: not a blob", e.Name()))
			continue
		}
		if err := verifyBlobFile(s.BlobPath(h), h); err != nil {
			errs = append(errs, err)
		}
	}
	refs, err := s.List()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("verifying store %s: refs: %w", s.root, err))...)
	}
	for _, r := range refs {
		if err := s.checkComplete(r.Descriptor); err != nil {
			errs = append(errs, fmt.Errorf("ref %s: %w", r.Ref, err))
		}
	}
	return errors.Join(errs...)
}

func verifyBlobFile(p string, want v1.Hash) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("blob %s: %w", want, err)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("blob %s: content hashes to sha256:%s", want, got)
	}
	return nil
}
