package build

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// Answers about a base image's paths (what lookupPath asked the merged
// tree of its layer indexes) are kept in the store by the image's diff
// IDs, so that a rebuild asks the same questions without decoding the
// indexes again: a Debian base's index is thousands of entries, more work
// than the rest of an unchanged rebuild. Only answers read from the tree
// are kept, never guesses (speculate.go).

// pathAnswers are one base image's answers: path to entry (nil: absent).
type pathAnswers struct {
	once  sync.Once
	mu    sync.Mutex
	file  string
	m     map[string]*archive.IndexEntry
	dirty bool
}

type answersFile struct {
	Version int                            `json:"v"`
	DiffIDs []string                       `json:"diffIDs"`
	Answers map[string]*archive.IndexEntry `json:"answers"`
}

const answersVersion = 1

// maxAnswers bounds one base's kept answers.
const maxAnswers = 4096

// answers returns the base's kept answers, read from the store once.
func (src *imageSource) answers(b *builder) *pathAnswers {
	a := &src.pathAnswers
	a.once.Do(func() {
		a.m = map[string]*archive.IndexEntry{}
		h := sha256.New()
		for _, d := range src.cfg.RootFS.DiffIDs {
			fmt.Fprintf(h, "%s\n", d)
		}
		a.file = filepath.Join(answersDir(b.opts.Store), hex.EncodeToString(h.Sum(nil))+".json")
		raw, err := os.ReadFile(a.file)
		if err != nil {
			return
		}
		var f answersFile
		if json.Unmarshal(raw, &f) == nil && f.Version == answersVersion && len(f.DiffIDs) == len(src.cfg.RootFS.DiffIDs) && f.Answers != nil {
			for i, d := range src.cfg.RootFS.DiffIDs {
				if f.DiffIDs[i] != d.String() {
					return
				}
			}
			a.m = f.Answers
		}
	})
	return a
}

// lookup returns the kept answer for p.
func (a *pathAnswers) lookup(p string) (*tar.Header, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[p]
	if !ok || e == nil {
		return nil, ok
	}
	h := e.Header()
	h.Name = p
	return h, true
}

// remember keeps the tree's answer for p (h nil: absent).
func (a *pathAnswers) remember(p string, h *tar.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[p]; ok || len(a.m) >= maxAnswers {
		return
	}
	var e *archive.IndexEntry
	if h != nil {
		x := archive.EntryOf(h)
		e = &x
	}
	a.m[p] = e
	a.dirty = true
}

// save writes the answers back when they grew.
func (a *pathAnswers) save(src *imageSource) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty {
		return nil
	}
	f := answersFile{Version: answersVersion, Answers: a.m}
	for _, d := range src.cfg.RootFS.DiffIDs {
		f.DiffIDs = append(f.DiffIDs, d.String())
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.file), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Replace(a.file, raw); err != nil {
		return err
	}
	a.dirty = false
	return nil
}

// saveAnswers keeps every base's new answers (a failure is a warning).
func (b *builder) saveAnswers() {
	b.mu.Lock()
	srcs := make([]*imageSource, 0, len(b.images))
	for _, src := range b.images {
		srcs = append(srcs, src)
	}
	b.mu.Unlock()
	for _, src := range srcs {
		if err := src.pathAnswers.save(src); err != nil {
			b.opts.Progress.Warnf("", "keeping what %s holds: %v", src.ref, err)
		}
	}
}

func answersDir(st *store.Store) string { return filepath.Join(st.Root(), "path-answers") }

// PrunePathAnswers prunes the answers kept in st (kiln prune), and returns
// how many bases' answers it removed. With all set it removes them all
// (when before is set: those no build wrote since before); otherwise only
// those about layers the store no longer has: a base none of whose stored
// images (built on it) and none of whose kept layer indexes is left.
// Unreadable files and leftovers of an interrupted write go too.
func PrunePathAnswers(st *store.Store, all bool, before time.Time) (int, error) {
	dir := answersDir(st)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pruning path answers: %w", err)
	}
	var present func(d string) bool
	if !all {
		if present, err = presentLayers(st); err != nil {
			return 0, fmt.Errorf("pruning path answers: %w", err)
		}
	}
	n := 0
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		var drop bool
		switch {
		case strings.HasPrefix(de.Name(), ".") && (strings.Contains(de.Name(), ".tmp-") || strings.HasPrefix(de.Name(), ".answers-")):
			// A write that died (a live one renames within moments):
			// atomicfile.Replace's .NAME.tmp-*, older kiln's .answers-*.
			drop = time.Since(fi.ModTime()) > time.Hour
		case all:
			drop = before.IsZero() || fi.ModTime().Before(before)
		default:
			drop = !answersPresent(p, present)
		}
		if !drop {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("pruning path answers: %w", err)
		}
		if !strings.HasPrefix(de.Name(), ".") {
			n++
		}
	}
	return n, nil
}

// presentLayers reports which diff IDs the store still has: a layer of a
// stored image, or one whose path index is kept.
func presentLayers(st *store.Store) (func(d string) bool, error) {
	held := map[string]bool{}
	err := st.WalkImages(func(_ v1.Image, cfg *v1.ConfigFile) {
		for _, d := range cfg.RootFS.DiffIDs {
			held[d.String()] = true
		}
	})
	if err != nil {
		return nil, err
	}
	return func(d string) bool {
		if held[d] {
			return true
		}
		h, err := v1.NewHash(d)
		if err != nil {
			return false
		}
		_, ok, err := st.CacheRef(cache.IndexKey(h))
		return err == nil && ok
	}, nil
}

// answersPresent reports whether the answers file p is readable and every
// layer it is about is present.
func answersPresent(p string, present func(d string) bool) bool {
	raw, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	var f answersFile
	if json.Unmarshal(raw, &f) != nil || f.Version != answersVersion || len(f.DiffIDs) == 0 {
		return false
	}
	for _, d := range f.DiffIDs {
		if !present(d) {
			return false
		}
	}
	return true
}
