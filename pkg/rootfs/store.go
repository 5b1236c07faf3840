package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Layer is one layer of an image, bottom first in a stack.
type Layer struct {
	// DiffID is the digest of the uncompressed layer.
	DiffID v1.Hash
	// Open returns the uncompressed tar; it is called only when the layer
	// is not unpacked yet.
	Open func() (io.ReadCloser, error)
	// Name is how errors and notes name the layer.
	Name string
	// Verified says that Open's reader checks the tar against DiffID
	// itself: where the content differs, its Read returns an error, never
	// io.EOF. The store then does not hash the layer a second time.
	Verified bool
}

// Unpacker applies layers where their owners are kept (package sandbox:
// inside the build's user namespace).
type Unpacker interface {
	// Key names the id mapping: layer directories unpacked under different
	// mappings hold different owners and are kept apart.
	Key() string
	// Unpack applies the tar r as the upper directory dest of an overlay
	// of lowers (bottom first; none for the first layer), creating dest.
	// work is an empty directory on dest's filesystem. dest is on disk
	// when it returns (one syncfs, no fsync per file): the store then
	// publishes it. It returns notes on what could not be applied (device
	// nodes, xattrs).
	Unpack(ctx context.Context, lowers []string, dest, work string, r io.Reader) (notes []string, err error)
	// Remove deletes a directory tree that may hold files of other owners.
	Remove(ctx context.Context, dir string) error
}

// ChainIDs returns the chain ID of every prefix of a stack of diff IDs:
// the first is the first diff ID, then sha256 of "<previous chain ID>
// <diff ID>" (the OCI image spec's definition).
func ChainIDs(diffIDs []v1.Hash) []v1.Hash {
	out := make([]v1.Hash, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out[i] = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	}
	return out
}

// Store holds unpacked layer directories under root:
//
//	root/<key>/<chain-id hex>/       a layer directory (overlay format)
//	root/<key>/<chain-id hex>.lock   flock while it is unpacked
//	root/<key>/tmp/                  directories of steps in progress
//
// A layer directory appears by an atomic rename once complete, so a
// directory that exists is whole, and many builds (and processes) share it.
type Store struct {
	root string

	mu       sync.Mutex
	unpacked int // layers this Store unpacked (for tests and benchmarks)
}

// Open returns the store in dir (created when missing). It refuses "/" and
// any directory that resolves to it: kiln never unpacks into its own root.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("rootfs store %s: %w", abs, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("rootfs store %s: %w", abs, err)
	} else if real == "/" {
		return nil, fmt.Errorf("rootfs store %s: refusing to unpack into the root filesystem", abs)
	}
	return &Store{root: abs}, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Unpacked reports how many layers this Store value has unpacked.
func (s *Store) Unpacked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unpacked
}

func checkKey(key string) error {
	if key == "" || strings.ContainsAny(key, "/\x00") || key == "." || key == ".." {
		return fmt.Errorf("rootfs store: invalid mapping key %q", key)
	}
	return nil
}

// Dir is where the layer directory of chain lives under mapping key.
func (s *Store) Dir(key string, chain v1.Hash) string {
	return filepath.Join(s.root, key, chain.Hex)
}

// Has reports whether the layer directory of chain exists.
func (s *Store) Has(key string, chain v1.Hash) bool {
	fi, err := os.Lstat(s.Dir(key, chain))
	return err == nil && fi.IsDir()
}

// TempDir makes a new directory for a step's upper and work directories,
// on the filesystem of the layer directories (so that Commit can rename).
func (s *Store) TempDir(key, pattern string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	base := filepath.Join(s.root, key, "tmp")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(base, pattern)
}

// lock takes an exclusive flock for chain's layer directory.
func (s *Store) lock(ctx context.Context, key string, chain v1.Hash) (func(), error) {
	p := s.Dir(key, chain) + ".lock"
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-sleep():
		}
	}
}

// Commit makes dir (a finished upper directory, on the store's filesystem)
// the layer directory of chain. If another build committed the same chain
// first, dir is removed through u and the existing directory is kept.
func (s *Store) Commit(ctx context.Context, u Unpacker, chain v1.Hash, dir string) error {
	key := u.Key()
	if err := checkKey(key); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, key, chain)
	if err != nil {
		return err
	}
	defer unlock()
	if s.Has(key, chain) {
		return u.Remove(ctx, dir)
	}
	if err := os.Rename(dir, s.Dir(key, chain)); err != nil {
		return fmt.Errorf("rootfs store: %w", err)
	}
	markUsed(s.Dir(key, chain))
	return nil
}

// Prepare makes sure every layer of the stack is unpacked and returns the
// layer directories, bottom first. Layers already unpacked (by this or any
// earlier build under the same mapping) are not read at all.
func (s *Store) Prepare(ctx context.Context, u Unpacker, layers []Layer, note func(string)) ([]string, error) {
	key := u.Key()
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if len(layers) > maxLowers {
		// Up front: unpacking the first 500 would only fail at the 501st.
		return nil, fmt.Errorf("%d layers: an overlay mount takes at most %d (the kernel's limit); squash the base image", len(layers), maxLowers)
	}
	diffIDs := make([]v1.Hash, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.DiffID
	}
	chains := ChainIDs(diffIDs)
	dirs := make([]string, len(layers))
	for i, c := range chains {
		dirs[i] = s.Dir(key, c)
	}
	for i, c := range chains {
		if !s.Has(key, c) {
			if err := s.unpack(ctx, u, layers[i], c, dirs[:i], note); err != nil {
				return nil, err
			}
		}
		markUsed(dirs[i])
	}
	return dirs, nil
}

// markUsed sets a layer directory's time to now: Prune keeps layers used
// recently (an unpacked directory otherwise has its layer's time, which
// may be years old). Best effort.
func markUsed(dir string) {
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
}

func (s *Store) unpack(ctx context.Context, u Unpacker, l Layer, chain v1.Hash, lowers []string, note func(string)) error {
	key := u.Key()
	unlock, err := s.lock(ctx, key, chain)
	if err != nil {
		return err
	}
	defer unlock()
	if s.Has(key, chain) { // unpacked by another build while we waited
		return nil
	}
	tmp, err := s.TempDir(key, "unpack-")
	if err != nil {
		return err
	}
	defer func() {
		if _, err := os.Lstat(tmp); err == nil {
			_ = u.Remove(context.WithoutCancel(ctx), tmp)
		}
	}()
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Name, err)
	}
	defer rc.Close()
	// The directory is named after the diff IDs: check that the tar is
	// the one its diff ID names (a layer from a registry cache, say),
	// unless the reader checks it.
	var h hash.Hash
	var r io.Reader = rc
	if !l.Verified {
		h = sha256.New()
		r = io.TeeReader(rc, h)
	}
	dest := filepath.Join(tmp, "diff")
	work := filepath.Join(tmp, "work")
	notes, err := u.Unpack(ctx, lowers, dest, work, r)
	if err != nil {
		return fmt.Errorf("unpacking layer %s: %w", l.Name, err)
	}
	// Whatever the tar held after its trailer is not part of the layer,
	// but the reader must reach the end for lazily fetched layers to be
	// verified and kept, and for the diff ID to be checked.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("layer %s: %w", l.Name, err)
	}
	if h != nil && l.DiffID.Algorithm == "sha256" {
		if got := hex.EncodeToString(h.Sum(nil)); got != l.DiffID.Hex {
			return fmt.Errorf("layer %s: its content is sha256:%s, not its diff ID %s", l.Name, got, l.DiffID)
		}
	}
	if note != nil {
		for _, n := range notes {
			note(fmt.Sprintf("layer %s: %s", l.Name, n))
		}
	}
	if err := os.Rename(dest, s.Dir(key, chain)); err != nil {
		return fmt.Errorf("rootfs store: %w", err)
	}
	s.mu.Lock()
	s.unpacked++
	s.mu.Unlock()
	return nil
}

func sleep() <-chan time.Time { return time.After(20 * time.Millisecond) }

// Prune removes, through u, the layer directories of mapping u.Key() that
// keep does not want and that no build has used for grace (Prepare marks
// a directory used each time it hands it out): a build running alongside
// never loses a layer it just asked for. A directory being unpacked or
// committed (locked) is left alone. It returns how many it removed.
func (s *Store) Prune(ctx context.Context, u Unpacker, keep func(chain v1.Hash) bool, grace time.Duration) (int, error) {
	key := u.Key()
	if err := checkKey(key); err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(filepath.Join(s.root, key))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-grace)
	n := 0
	for _, e := range ents {
		chain := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if !e.IsDir() || len(e.Name()) != 64 || strings.Trim(e.Name(), "0123456789abcdef") != "" || keep(chain) {
			continue
		}
		if fi, err := e.Info(); err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if err := s.pruneOne(ctx, u, key, chain, cutoff); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *Store) pruneOne(ctx context.Context, u Unpacker, key string, chain v1.Hash, cutoff time.Time) error {
	lockCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	unlock, err := s.lock(lockCtx, key, chain)
	if err != nil {
		return nil // busy: leave it
	}
	defer unlock()
	dir := s.Dir(key, chain)
	fi, err := os.Lstat(dir)
	if err != nil || fi.ModTime().After(cutoff) {
		return nil // gone, or used meanwhile
	}
	// Out of the way first, so that no build finds a half-removed layer.
	trash, err := s.TempDir(key, "prune-")
	if err != nil {
		return err
	}
	if err := os.Rename(dir, filepath.Join(trash, "diff")); err != nil {
		return fmt.Errorf("rootfs store: %w", err)
	}
	return u.Remove(ctx, trash)
}
