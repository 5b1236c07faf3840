package registry

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Platform is an image platform (os, architecture, variant).
type Platform = v1.Platform

// dockerHubRegistry is how go-containerregistry names Docker Hub.
const dockerHubRegistry = name.DefaultRegistry // "index.docker.io"

// pathComponent is one component of a repository path in docker's grammar.
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// ParseReference parses an image reference the way docker does:
// "busybox" is index.docker.io/library/busybox:latest, "host:port/repo:tag"
// names another registry, "@sha256:..." pins a digest, and
// "repo:tag@sha256:..." keeps only the digest. The returned reference's
// String() is fully qualified. Loopback registries and those matched by
// --insecure-registry (or all, with --tls-verify=false: see Options) are
// marked insecure so that plain HTTP may be used.
func (c *Client) ParseReference(s string) (name.Reference, error) { return parseReference(s, c.o) }

// ParseReference is Client.ParseReference with the default Options: only
// loopback registries are marked insecure. It suits names that are only
// compared or stored, never sent to.
func ParseReference(s string) (name.Reference, error) { return parseReference(s, Options{}) }

func parseReference(s string, o Options) (name.Reference, error) {
	bad := func(why string) error { return fmt.Errorf("invalid reference %q: %s", s, why) }
	switch {
	case s == "":
		return nil, bad("empty")
	case strings.Contains(s, "://"):
		return nil, bad("must not contain a URL scheme")
	case strings.ContainsAny(s, " \t\r\n"):
		return nil, bad("contains white space")
	case strings.Count(s, "@") > 1:
		return nil, bad("more than one '@'")
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, bad(explainRefError(s, err))
	}
	repo := ref.Context().RepositoryStr()
	for _, c := range strings.Split(repo, "/") {
		if !pathComponent.MatchString(c) {
			if strings.ToLower(c) != c {
				return nil, bad("repository name must be lowercase")
			}
			return nil, bad(fmt.Sprintf("invalid repository path component %q", c))
		}
	}
	if len(ref.Context().Name()) > 255 {
		return nil, bad("repository name longer than 255 characters")
	}
	var opts []name.Option
	if o.allowsPlainHTTP(ref.Context().RegistryStr()) {
		opts = append(opts, name.Insecure)
	}
	// Re-parse the normalised name so that String() is fully qualified.
	full, err := name.ParseReference(ref.Name(), opts...)
	if err != nil {
		return nil, bad(explainRefError(s, err))
	}
	return full, nil
}

// explainRefError turns go-containerregistry's parse error into a reason.
func explainRefError(s string, err error) string {
	base := s
	if i := strings.Index(base, "@"); i >= 0 {
		if !strings.HasPrefix(base[i+1:], "sha256:") && !strings.HasPrefix(base[i+1:], "sha512:") {
			return "unsupported digest algorithm"
		}
		base = base[:i]
	}
	last := base[strings.LastIndex(base, "/")+1:]
	if strings.ToLower(base) != base {
		// Upper case is legal only in the registry host and in the tag.
		lower := true
		repoPart := base
		if i := strings.Index(repoPart, "/"); i >= 0 && strings.ContainsAny(repoPart[:i], ".:") {
			repoPart = repoPart[i+1:]
		}
		if j := strings.LastIndex(repoPart, ":"); j >= 0 && !strings.Contains(repoPart[j:], "/") {
			repoPart = repoPart[:j]
		}
		if strings.ToLower(repoPart) != repoPart {
			lower = false
		}
		if !lower {
			return "repository name must be lowercase"
		}
	}
	if strings.HasSuffix(last, ":") {
		return "empty tag"
	}
	if strings.Contains(s, "@") {
		return "invalid digest"
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "could not parse reference: ")
	if msg == s {
		return "invalid reference format"
	}
	return msg
}

// Familiar splits a stored reference into the repository docker shows
// (Docker Hub's library images by their short name: "busybox",
// "team/app", "host:5000/app") and its tag or digest ("<none>" when it
// has neither).
func Familiar(ref string) (repo, tag string) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref, "<none>"
	}
	repo = reference.FamiliarName(named)
	switch r := named.(type) {
	case reference.Digested:
		return repo, r.Digest().String()
	case reference.Tagged:
		return repo, r.Tag()
	}
	return repo, "<none>"
}

// FamiliarString shows a repository or reference as docker does (see
// Familiar), keeping its tag or digest.
func FamiliarString(s string) string {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return reference.FamiliarString(named)
}

// MatchFamiliar reports whether the stored reference ref matches pattern as
// `docker images PATTERN` does: pattern, a path glob, matches the familiar
// reference ("busybox:1", "host:5000/app:2") or, for a tagged one, its
// familiar name ("busybox", "host:5000/app"); a fully qualified pattern
// matches as its familiar form does.
func MatchFamiliar(pattern, ref string) bool {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false
	}
	if ok, err := reference.FamiliarMatch(pattern, named); err == nil && ok {
		return true
	}
	// A fully qualified pattern ("docker.io/library/app") matches by its
	// familiar form.
	if p, err := reference.ParseNormalizedNamed(pattern); err == nil {
		ok, err := reference.FamiliarMatch(reference.FamiliarString(p), named)
		return err == nil && ok
	}
	return false
}
