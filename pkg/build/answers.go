package build

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/kiln-build/kiln/pkg/archive"
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
		a.file = filepath.Join(b.opts.Store.Root(), "path-answers", hex.EncodeToString(h.Sum(nil))+".json")
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
	tmp, err := os.CreateTemp(filepath.Dir(a.file), ".answers-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(raw)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), a.file)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return werr
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
