package policy

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Violation is a refusal: the image, the rule that refuses it and the file
// that holds the rule.
type Violation struct {
	Image  string
	Rule   string
	File   string
	Reason string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("policy: %s: %s (%s, %s)", v.Image, v.Reason, v.Rule, v.File)
}

// Match is what policy.json says of a reference.
type Match struct {
	// Rule names the entry that applies: `transports.docker "SCOPE"`,
	// `transports.docker ""` or "default".
	Rule         string
	Requirements []Requirement
}

// DockerName is the name containers' tools give repo (Docker Hub is
// docker.io, not index.docker.io).
func DockerName(repo name.Repository) string {
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry || reg == "registry-1.docker.io" {
		reg = "docker.io"
	}
	return reg + "/" + repo.RepositoryStr()
}

// Identity is ref as containers' tools name it: NAME:TAG or NAME@DIGEST.
func Identity(ref name.Reference) string {
	n := DockerName(ref.Context())
	switch r := ref.(type) {
	case name.Digest:
		return n + "@" + r.DigestStr()
	case name.Tag:
		return n + ":" + r.TagStr()
	}
	return n
}

// Scopes lists the transports.docker scopes that apply to ref, most
// specific first, as containers/image looks them up: the reference itself,
// the repository, each enclosing namespace, the registry, then *.DOMAIN
// wildcards of the registry's host name from the longest.
func Scopes(ref name.Reference) []string {
	out := []string{Identity(ref)}
	for n := DockerName(ref.Context()); ; {
		out = append(out, n)
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			break
		}
		n = n[:i]
	}
	host := DockerName(ref.Context())
	host = host[:strings.IndexByte(host, '/')]
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	for {
		i := strings.IndexByte(host, '.')
		if i < 0 {
			break
		}
		host = host[i+1:]
		out = append(out, "*."+host)
	}
	return out
}

// Match finds the requirements policy.json sets for ref.
func (p *Policy) Match(ref name.Reference) Match {
	for _, s := range Scopes(ref) {
		if reqs, ok := p.Docker[s]; ok {
			return Match{Rule: fmt.Sprintf("transports.docker %q", s), Requirements: reqs}
		}
	}
	if reqs, ok := p.Docker[""]; ok {
		return Match{Rule: `transports.docker ""`, Requirements: reqs}
	}
	return Match{Rule: "default", Requirements: p.Default}
}

func (p *Policy) file() string {
	if p.Path == "" {
		return "no policy.json, " + p.RulesPath
	}
	return p.Path
}

// CheckRead decides whether kiln may read ref. It returns a *Violation, or
// the sigstoreSigned requirements a signature of the image must meet
// before it is used (none: the image is accepted as it is).
func (p *Policy) CheckRead(ref name.Reference) ([]Requirement, error) {
	if p == nil {
		return nil, nil
	}
	if p.broken != nil {
		return nil, p.broken
	}
	m := p.Match(ref)
	var verify []Requirement
	for _, r := range m.Requirements {
		reason := ""
		switch r.Type {
		case TypeAccept:
			continue
		case TypeReject:
			reason = "rejected"
		case TypeSignedBy:
			reason = "needs a GPG signature (signedBy), which kiln cannot verify: use sigstoreSigned with a cosign public key"
		case TypeSignedBaseLayer:
			reason = "needs signedBaseLayer, which kiln (like containers/image) does not implement"
		case TypeSigstoreSigned:
			if r.Fulcio != nil || r.PKI != nil {
				reason = "needs a keyless (Fulcio/PKI) sigstore signature, which kiln cannot verify (no Fulcio or Rekor to reach): use keyPath with a cosign public key"
			} else {
				verify = append(verify, r)
				continue
			}
		}
		return nil, &Violation{Image: Identity(ref), Rule: m.Rule, File: p.file(), Reason: reason}
	}
	return verify, nil
}

// CheckWrite decides whether kiln may write to ref (push, build --push,
// copy targets, --cache-to): kiln-policy.json's allowPush.
func (p *Policy) CheckWrite(ref name.Reference) error {
	if p.Err() != nil {
		return p.broken
	}
	if p == nil || p.Rules.AllowPush == nil {
		return nil
	}
	if s := p.pushScope(ref); s != "" {
		return nil
	}
	allowed := strings.Join(*p.Rules.AllowPush, ", ")
	if allowed == "" {
		allowed = "nothing"
	}
	return &Violation{Image: Identity(ref), Rule: "allowPush", File: p.RulesPath,
		Reason: "pushing here is not allowed (allowed: " + allowed + ")"}
}

// pushScope is the allowPush entry that allows ref ("" when none does).
func (p *Policy) pushScope(ref name.Reference) string {
	for _, s := range Scopes(ref) {
		for _, a := range *p.Rules.AllowPush {
			if a == s || a == "docker.io" && s == "index.docker.io" {
				return a
			}
		}
	}
	return ""
}

// CheckPinned refuses, under requireDigest, an image a Dockerfile names
// that is not pinned by digest. what says how it is named ("FROM").
func (p *Policy) CheckPinned(ref name.Reference) error {
	if p.Err() != nil {
		return p.broken
	}
	if p == nil || !p.Rules.RequireDigest {
		return nil
	}
	if _, ok := ref.(name.Digest); ok {
		return nil
	}
	return &Violation{Image: Identity(ref), Rule: "requireDigest", File: p.RulesPath,
		Reason: "not pinned by digest (write NAME@sha256:DIGEST)"}
}

// MirrorsOnly reports whether Docker Hub may only be read through mirrors.
func (p *Policy) MirrorsOnly() bool { return p != nil && p.Rules.MirrorsOnly }

// MirrorsOnlyViolation is the refusal of a Docker Hub read when no mirror
// is configured under mirrorsOnly.
func (p *Policy) MirrorsOnlyViolation(ref name.Reference) error {
	return &Violation{Image: Identity(ref), Rule: "mirrorsOnly", File: p.RulesPath,
		Reason: "Docker Hub may only be read through a mirror, and no --registry-mirror is set"}
}

// Explain says, one line each, which rules apply to ref: reading it (and
// the signatures it needs), pushing to it, naming it in a Dockerfile, and
// whether Docker Hub is read only through mirrors.
func (p *Policy) Explain(ref name.Reference) []string {
	if p == nil {
		return []string{"read: allowed (no policy file)", "push: allowed (no policy file)"}
	}
	if p.broken != nil {
		return []string{"error: " + p.broken.Error()}
	}
	var out []string
	m := p.Match(ref)
	verdict := "allowed"
	if verify, err := p.CheckRead(ref); err != nil {
		verdict = "refused: " + err.(*Violation).Reason
	} else if len(verify) > 0 {
		var keys []string
		for _, r := range verify {
			keys = append(keys, r.keyNames()...)
		}
		verdict = "needs a cosign signature verified by " + strings.Join(keys, " and ")
	}
	out = append(out, fmt.Sprintf("read: %s (%s, %s)", verdict, m.Rule, p.file()))
	switch {
	case p.Rules.AllowPush == nil:
		out = append(out, "push: allowed (no allowPush rule)")
	case p.CheckWrite(ref) == nil:
		out = append(out, fmt.Sprintf("push: allowed (allowPush %q, %s)", p.pushScope(ref), p.RulesPath))
	default:
		out = append(out, "push: refused: "+p.CheckWrite(ref).(*Violation).Reason+" ("+p.RulesPath+")")
	}
	if err := p.CheckPinned(ref); err != nil {
		out = append(out, "Dockerfile: refused: "+err.(*Violation).Reason+" (requireDigest, "+p.RulesPath+")")
	} else if p.Rules.RequireDigest {
		out = append(out, "Dockerfile: allowed (pinned by digest; requireDigest, "+p.RulesPath+")")
	}
	if p.MirrorsOnly() && strings.HasPrefix(DockerName(ref.Context()), "docker.io/") {
		out = append(out, "mirrors only: read through --registry-mirror, never from Docker Hub (mirrorsOnly, "+p.RulesPath+")")
	}
	return out
}

func (r Requirement) keyNames() []string {
	switch {
	case r.KeyPath != "":
		return []string{r.KeyPath}
	case len(r.KeyPaths) > 0:
		return []string{"one of " + strings.Join(r.KeyPaths, ", ")}
	}
	return []string{"keyData"}
}
