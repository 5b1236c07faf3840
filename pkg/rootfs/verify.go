package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Verifier compares an unpacked layer directory with its layer's tar
// (package sandbox's VerifyUnpacked), returning what differs.
type Verifier interface {
	Unpacker
	VerifyUnpacked(ctx context.Context, dir string, r io.Reader) ([]string, error)
}

// Verified is the outcome of Reverify for one layer directory.
type Verified struct {
	Chain v1.Hash
	Dir   string
	// Problems say how the directory differs from its layer; Unknown is
	// set instead when no stored image names the chain (its layer cannot
	// be read to compare).
	Problems []string
	Unknown  bool
	// Removed is set when the directory was removed (a build unpacks
	// the layer again, from its verified tar, when it needs it).
	Removed bool
}

// Reverify checks every layer directory of mapping u.Key() against its
// layer: layers maps a chain ID to its top layer (whose tar must match
// its diff ID while it is read). A directory that differs, or whose
// layer no stored image has, is removed through u; one being unpacked or
// committed (locked) is skipped.
func (s *Store) Reverify(ctx context.Context, u Verifier, layers map[v1.Hash]Layer) ([]Verified, error) {
	key := u.Key()
	if err := checkKey(key); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(s.root, key))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Verified
	for _, e := range ents {
		if !e.IsDir() || len(e.Name()) != 64 || strings.Trim(e.Name(), "0123456789abcdef") != "" {
			continue
		}
		chain := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		v, err := s.reverifyOne(ctx, u, key, chain, layers)
		if err != nil {
			return out, err
		}
		if v != nil {
			out = append(out, *v)
		}
	}
	return out, nil
}

func (s *Store) reverifyOne(ctx context.Context, u Verifier, key string, chain v1.Hash, layers map[v1.Hash]Layer) (*Verified, error) {
	unlock, err := s.lock(ctx, key, chain)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := s.Dir(key, chain)
	if !s.Has(key, chain) {
		return nil, nil
	}
	v := &Verified{Chain: chain, Dir: dir}
	l, ok := layers[chain]
	if !ok {
		v.Unknown = true
	} else if v.Problems, err = verifyAgainst(ctx, u, dir, l); err != nil {
		return nil, err
	}
	if v.Unknown || len(v.Problems) > 0 {
		trash, err := s.TempDir(key, "verify-")
		if err != nil {
			return nil, err
		}
		if err := os.Rename(dir, filepath.Join(trash, "diff")); err != nil {
			return nil, fmt.Errorf("rootfs store: %w", err)
		}
		if err := u.Remove(ctx, trash); err != nil {
			return nil, err
		}
		v.Removed = true
	}
	return v, nil
}

// verifyAgainst streams l's tar, checked against its diff ID, into the
// comparison with dir.
func verifyAgainst(ctx context.Context, u Verifier, dir string, l Layer) ([]string, error) {
	rc, err := l.Open()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Name, err)
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	problems, err := u.VerifyUnpacked(ctx, dir, r)
	if err != nil {
		return nil, fmt.Errorf("verifying layer %s: %w", l.Name, err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); l.DiffID.Algorithm == "sha256" && got != l.DiffID.Hex {
		return nil, fmt.Errorf("layer %s: its content is sha256:%s, not its diff ID %s (the store's blob is damaged: kiln prune removes nothing for it; pull the image again)", l.Name, got, l.DiffID)
	}
	return problems, nil
}
