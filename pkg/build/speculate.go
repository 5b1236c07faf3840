package build

import (
	"archive/tar"
	"context"
	"fmt"

	"github.com/kiln-build/kiln/pkg/archive"
)

// Speculation. A COPY, ADD or WORKDIR step must know what its destination
// and the parents of it are in the base image (a directory? a symlink?),
// and the answer comes from the base layers' path indexes (index.go).
// When no index is at hand (a fresh store, no --cache-from), making one
// means downloading the layer. Rather than wait for that, a stage that runs
// no RUN step guesses each answer (guessBase), goes on with the guess, and
// makes the indexes meanwhile, concurrently with its own work (reading and
// hashing the context, writing and compressing its layers). Before the
// stage is finished (or before a RUN step uses its layers) every guess is
// checked against the index (settleGuesses): when all were right, the
// stage is exactly what it would have been had it waited; when one was
// wrong, the stage is built again with the index at hand (executeChecked),
// and the layers of its steps that the wrong guess did not change are
// taken from the local layer cache, not written again. The result never
// depends on a guess.

// wrongGuess reports a guess about the base that its index contradicts.
type wrongGuess struct {
	path           string
	guess, actual  *tar.Header
	stage, baseRef string
}

func (w *wrongGuess) Error() string {
	return "[" + w.stage + "] " + w.text()
}

// text is the message without the stage.
func (w *wrongGuess) text() string {
	return fmt.Sprintf("the guess that %s of %s is %s was wrong (it is %s)", w.path, w.baseRef, describeEntry(w.guess), describeEntry(w.actual))
}

func describeEntry(h *tar.Header) string {
	switch {
	case h == nil:
		return "absent"
	case h.Typeflag == tar.TypeDir:
		return "a directory"
	case h.Typeflag == tar.TypeSymlink:
		return "a symlink to " + h.Linkname
	}
	return "a file"
}

// likelyDirs are directories in nearly every Linux base image (and every
// parent of one is listed too): a guess about them says directory.
// Anything else is guessed absent. /bin, /lib and /sbin are left out: they
// are symlinks in merged-/usr distributions and directories in others.
var likelyDirs = map[string]bool{
	"/etc": true, "/home": true, "/mnt": true, "/opt": true, "/root": true,
	"/srv": true, "/tmp": true, "/usr": true, "/var": true,
	"/usr/bin": true, "/usr/lib": true, "/usr/local": true, "/usr/sbin": true, "/usr/share": true,
	"/usr/local/bin": true, "/usr/local/lib": true, "/usr/local/sbin": true, "/usr/local/share": true,
	"/var/cache": true, "/var/lib": true, "/var/log": true,
}

// guessFor is the guess about clean absolute path p of a base image.
func guessFor(p string) *tar.Header {
	if likelyDirs[p] {
		return &tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: 0o755}
	}
	return nil
}

// sameAnswer reports whether a guess is what the index says, in what a
// copy plan reads of the base's entries: whether there is one, its type,
// and a symlink's target.
func sameAnswer(guess, actual *tar.Header) bool {
	if guess == nil || actual == nil {
		return guess == nil && actual == nil
	}
	if guess.Typeflag != actual.Typeflag {
		return false
	}
	return guess.Typeflag != tar.TypeSymlink || guess.Linkname == actual.Linkname
}

// mayGuess reports whether the stage may go on with guesses about its base.
func (s *stageState) mayGuess() bool {
	return !s.noGuess && s.known.base != nil
}

// guessBase answers a question about the base's clean absolute path p
// without its index: when the stage may guess and the index is not at
// hand, it returns the guess (the same one every time it is asked) and
// makes sure the index is being made. guessed is false when the index must
// answer (it is at hand, or guessing is not allowed).
func (s *stageState) guessBase(ctx context.Context, p, why string) (h *tar.Header, guessed bool, err error) {
	if !s.mayGuess() {
		return nil, false, nil
	}
	if g, ok := s.guesses[p]; ok {
		return g, true, nil
	}
	src := s.known.base
	if st := src.readyStack(); st != nil {
		// The index came: check what was guessed so far now, so that a
		// wrong guess stops the stage before more is built on it.
		return nil, false, s.checkGuesses(st)
	}
	if src.speculating() == nil {
		// Indexes in the store or the registry cache are read at once.
		st, err := src.cachedStack(ctx, s.b, s.stageTag())
		if err != nil {
			return nil, false, err
		}
		if st != nil {
			return nil, false, s.checkGuesses(st)
		}
		src.startStack(s.b, ctx, s.stageTag(), why)
	}
	if len(s.guesses) == 0 {
		s.b.opts.Progress.Notef(s.stageTag(), "going on with guesses about what %s holds while its path index is made (checked before the stage is done)", src.ref)
	}
	g := guessFor(p)
	if s.guesses == nil {
		s.guesses = map[string]*tar.Header{}
	}
	s.guesses[p] = g
	return g, true, nil
}

// checkGuesses compares every guess with what the base's layers hold (st);
// when all are right, the answers are kept for later builds (answers.go).
func (s *stageState) checkGuesses(st *archive.IndexStack) error {
	actuals := make(map[string]*tar.Header, len(s.guesses))
	for p, g := range s.guesses {
		var actual *tar.Header
		if n, ok := st.Lookup(p); ok {
			h := n.Header
			h.Name = p
			actual = &h
		}
		if !sameAnswer(g, actual) {
			s.wrong = &wrongGuess{path: p, guess: g, actual: actual, stage: s.stageTag(), baseRef: s.known.base.ref}
			return s.wrong
		}
		actuals[p] = actual
	}
	answers := s.known.base.answers(s.b)
	for p, h := range actuals {
		answers.remember(p, h)
	}
	// All right so far: from now on the index answers.
	s.guesses = nil
	s.noGuess = true
	return nil
}

// settleGuesses waits for the base's index when the stage guessed and
// checks every guess: a wrong one is a *wrongGuess error (the stage is
// then built again). Once settled, the stage asks the index directly.
func (s *stageState) settleGuesses(ctx context.Context) error {
	if len(s.guesses) == 0 {
		s.noGuess = true
		return nil
	}
	st, err := s.known.base.indexStack(ctx, s.b, s.stageTag(), "checking the guesses about its files")
	if err != nil {
		return err
	}
	return s.checkGuesses(st)
}

// executeChecked builds the stage; when a guess about its base was wrong,
// it builds it again with the base's index at hand (no guesses).
func (s *stageState) executeChecked(ctx context.Context) (*stageResult, error) {
	fresh := *s // the state before any step: a retry starts from it
	res, err := s.execute(ctx)
	if s.wrong == nil || ctx.Err() != nil {
		return res, err
	}
	// The error the wrong guess caused (wrapped in a step's message, or
	// the guess itself) is dropped with the stage.
	s.b.opts.Progress.Notef(s.wrong.stage, "%s: building the stage again with the index at hand", s.wrong.text())
	retry := &fresh
	retry.noGuess = true
	return retry.execute(ctx)
}
