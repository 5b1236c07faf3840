package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// CopyTargets reads the references of `kiln copy SRC DST...`: the source
// (nil when local: a local source is a name in the store, resolved by
// ResolveStored) and each destination. A destination that names no tag
// or digest keeps the source's, as skopeo's and crane's copy do. With
// allTags the source and the one destination are repositories (their
// tags are listed and copied one by one, CopyAllTags), and a local source,
// one image, is refused. The strings are references as typed, without a
// transport prefix.
func (c *Client) CopyTargets(src string, dsts []string, local, allTags bool) (name.Reference, []name.Reference, error) {
	var srcRef name.Reference
	if !local {
		r, err := c.ParseReference(src)
		if err != nil {
			return nil, nil, fmt.Errorf("source: %w", err)
		}
		srcRef = r
	}
	var out []name.Reference
	for _, s := range dsts {
		d, err := c.ParseReference(s)
		if err != nil {
			return nil, nil, fmt.Errorf("destination: %w", err)
		}
		switch {
		case allTags:
			if hasExplicitTag(s) {
				return nil, nil, fmt.Errorf("--all-tags: destination %s must be a repository, without tag or digest", s)
			}
		case !hasExplicitTag(s) && srcRef != nil:
			// Keep the source's tag or digest.
			switch r := srcRef.(type) {
			case name.Tag:
				d = d.Context().Tag(r.TagStr())
			case name.Digest:
				d = d.Context().Digest(r.DigestStr())
			}
		}
		out = append(out, d)
	}
	if allTags {
		switch {
		case local:
			return nil, nil, errors.New("--all-tags copies between registries; a local: source is one image")
		case hasExplicitTag(src):
			return nil, nil, fmt.Errorf("--all-tags: source %s must be a repository, without tag or digest", src)
		case len(out) != 1:
			return nil, nil, errors.New("--all-tags takes one destination repository")
		}
	}
	return srcRef, out, nil
}

// hasExplicitTag reports whether s (a reference as typed) names a tag or a
// digest rather than only a repository.
func hasExplicitTag(s string) bool {
	if strings.Contains(s, "@") {
		return true
	}
	last := s[strings.LastIndex(s, "/")+1:]
	return strings.Contains(last, ":")
}
