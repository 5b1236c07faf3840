package registry

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// parseMirror turns a --registry-mirror value into the repository that
// mirrors Docker Hub's repo there: "https://mirror.example.com" serves
// library/debian as mirror.example.com/library/debian; a path in the URL
// is a prefix ("harbor.example.com/hub-proxy" serves it as
// harbor.example.com/hub-proxy/library/debian, as a Harbor proxy-cache
// project does). "http://" allows plain HTTP.
func (o Options) parseMirror(m string, repo name.Repository) (name.Repository, error) {
	s := strings.TrimSpace(m)
	insecure := false
	switch {
	case strings.HasPrefix(strings.ToLower(s), "http://"):
		s, insecure = s[len("http://"):], true
	case strings.HasPrefix(strings.ToLower(s), "https://"):
		s = s[len("https://"):]
	case strings.Contains(s, "://"):
		return name.Repository{}, fmt.Errorf("invalid registry mirror %q: want https://HOST[:PORT][/PREFIX]", m)
	}
	s = strings.Trim(s, "/")
	host, prefix, _ := strings.Cut(s, "/")
	if host == "" {
		return name.Repository{}, fmt.Errorf("invalid registry mirror %q: no host", m)
	}
	if strings.HasSuffix(prefix, "/v2") || prefix == "v2" {
		prefix = strings.TrimSuffix(strings.TrimSuffix(prefix, "v2"), "/")
	}
	path := repo.RepositoryStr()
	if prefix != "" {
		path = prefix + "/" + path
	}
	var opts []name.Option
	if insecure || o.allowsPlainHTTP(host) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.NewRepository(strings.ToLower(host)+"/"+path, opts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("invalid registry mirror %q: %v", m, err)
	}
	return r, nil
}

// CheckMirrors validates Options.Mirrors (for flag checking up front).
func (o Options) CheckMirrors() error {
	probe, _ := name.NewRepository("library/busybox")
	for _, m := range o.Mirrors {
		if _, err := o.parseMirror(m, probe); err != nil {
			return err
		}
	}
	return nil
}

// readRefs lists where ref may be read from, in order: for a Docker Hub
// reference, its equivalent on each mirror; then ref itself (always last).
func (o Options) readRefs(ref name.Reference) []name.Reference {
	if len(o.Mirrors) == 0 || canonicalHost(ref.Context().RegistryStr()) != dockerHubRegistry {
		return []name.Reference{ref}
	}
	var out []name.Reference
	for _, m := range o.Mirrors {
		repo, err := o.parseMirror(m, ref.Context())
		if err != nil {
			continue
		}
		switch r := ref.(type) {
		case name.Tag:
			out = append(out, repo.Tag(r.TagStr()))
		case name.Digest:
			out = append(out, repo.Digest(r.DigestStr()))
		}
	}
	return append(out, ref)
}

// OpenBlob reads blob h of repository repo ("host/path", as the local store
// records a layer's source), through a Docker Hub mirror when there is one.
// The content is verified against h as it is read: a mismatch is an error
// at the end of the stream.
func (c *Client) OpenBlob(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	ctx = orBackground(ctx)
	r, err := c.ParseReference(repo + "@" + h.String())
	if err != nil {
		return nil, err
	}
	cands, _, err := c.o.readCands(r)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, cand := range cands {
		d, ok := cand.(name.Digest)
		if !ok {
			continue
		}
		l, err := remote.Layer(d, c.RemoteOptions(ctx)...)
		if err == nil {
			var rc io.ReadCloser
			if rc, err = l.Compressed(); err == nil {
				return rc, nil
			}
		}
		lastErr = c.describeErr(ctx, "blob "+d.String(), d.Context(), err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}
