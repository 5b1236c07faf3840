package dockerfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// IgnoreFile finds the ignore file of a build: "<Dockerfile>.dockerignore"
// next to the Dockerfile wins over ".dockerignore" at the context root, as
// BuildKit does. It returns "" when there is none.
func IgnoreFile(contextDir, dockerfilePath string) string {
	if dockerfilePath != "" && dockerfilePath != "-" {
		p := dockerfilePath + ".dockerignore"
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	p := filepath.Join(contextDir, ".dockerignore")
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p
	}
	return ""
}

// LoadIgnore reads the patterns of an ignore file ("" gives none).
func LoadIgnore(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	pats, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pats, nil
}

// Matcher decides which context paths are excluded.
type Matcher struct {
	pm *patternmatcher.PatternMatcher
}

// NewMatcher compiles .dockerignore-style patterns (with ! exceptions and
// ** wildcards). source names where they came from, for errors.
func NewMatcher(source string, patterns []string) (*Matcher, error) {
	if len(patterns) == 0 {
		return &Matcher{}, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return &Matcher{pm: pm}, nil
}

// Excluded reports whether the slash-separated path rel, relative to the
// context root, is excluded: a pattern matches it or one of its parent
// directories, and no later exception pattern re-includes it.
func (m *Matcher) Excluded(rel string) (bool, error) {
	if m == nil || m.pm == nil {
		return false, nil
	}
	rel = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(rel)), "/")
	if rel == "." || rel == "" {
		return false, nil
	}
	return m.pm.MatchesOrParentMatches(rel)
}

// MayIncludeBelow reports whether a directory that is itself excluded may
// still have included entries below it (an exception pattern reaches into
// it), so that a walk knows whether it can skip the directory.
func (m *Matcher) MayIncludeBelow(dir string) bool {
	if m == nil || m.pm == nil || !m.pm.Exclusions() {
		return false
	}
	dir = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(dir)), "/") + "/"
	for _, p := range m.pm.Patterns() {
		if !p.Exclusion() {
			continue
		}
		s := p.String()
		if strings.HasPrefix(s, dir) || strings.ContainsAny(s, "*?[") {
			return true
		}
	}
	return false
}
