package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ReferrersTag is the referrers tag schema's tag of digest in repo
// (sha256-<hex>): an OCI index listing the manifests whose subject is
// digest, kept by clients where the registry has no referrers API.
func ReferrersTag(repo name.Repository, digest v1.Hash) name.Tag {
	return repo.Tag(digest.Algorithm + "-" + digest.Hex)
}

// maxReferrersIndex bounds a referrers list read from a registry.
const maxReferrersIndex = 4 << 20

// Referrers lists the manifests of repo whose subject is digest: from the
// registry's referrers API (GET /v2/<name>/referrers/<digest>) where it has
// one, else from the referrers tag (ReferrersTag). artifactType, when set,
// keeps only the referrers of that type (filtered here too: a registry may
// ignore the filter). None is an empty list, not an error. The policy is
// not consulted: callers read referrers of an image they were allowed to
// read.
func (c *Client) Referrers(ctx context.Context, repo name.Repository, digest v1.Hash, artifactType string) ([]v1.Descriptor, error) {
	ctx = orBackground(ctx)
	rt, err := c.authTransport(ctx, repo, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, c.describeErr(ctx, "referrers of "+digest.String(), repo, err)
	}
	w := &repoWriter{c: c, repo: repo, client: &http.Client{Transport: rt}}
	im, api, err := w.referrersAPI(ctx, digest, artifactType)
	if err != nil {
		return nil, c.describeErr(ctx, "referrers of "+repo.Digest(digest.String()).String(), repo, err)
	}
	if !api {
		im, err = w.referrersTagIndex(ctx, digest)
		if err != nil {
			return nil, c.describeErr(ctx, "referrers tag "+ReferrersTag(repo, digest).String(), repo, err)
		}
	}
	var out []v1.Descriptor
	for _, d := range im.Manifests {
		if artifactType == "" || d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out, nil
}

// referrersAPI asks the registry's referrers API; api is false when the
// registry has none (404, 400, 406, or an answer that is not an OCI index).
func (w *repoWriter) referrersAPI(ctx context.Context, digest v1.Hash, artifactType string) (im *v1.IndexManifest, api bool, err error) {
	u := w.url("/referrers/" + digest.String())
	if artifactType != "" {
		u.RawQuery = "artifactType=" + strings.ReplaceAll(artifactType, "+", "%2B")
	}
	resp, err := w.do(ctx, http.MethodGet, u, nil, -1, map[string]string{"Accept": string(types.OCIImageIndex)})
	if err != nil {
		return nil, false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable, http.StatusMethodNotAllowed:
		return nil, false, nil
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, false, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != string(types.OCIImageIndex) {
		return nil, false, nil
	}
	im, err = readIndex(resp.Body)
	return im, err == nil, err
}

// referrersTagIndex reads the referrers tag of digest (an empty index when
// there is none).
func (w *repoWriter) referrersTagIndex(ctx context.Context, digest v1.Hash) (*v1.IndexManifest, error) {
	tag := ReferrersTag(w.repo, digest)
	resp, err := w.do(ctx, http.MethodGet, w.url("/manifests/"+tag.TagStr()), nil, -1, map[string]string{"Accept": string(types.OCIImageIndex)})
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusNotFound {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, err
	}
	im, err := readIndex(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	if im.MediaType != types.OCIImageIndex {
		return nil, fmt.Errorf("%s is a %q, not the OCI index of the referrers tag schema", tag, im.MediaType)
	}
	return im, nil
}

func readIndex(r io.Reader) (*v1.IndexManifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxReferrersIndex+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxReferrersIndex {
		return nil, fmt.Errorf("referrers list larger than %d bytes", maxReferrersIndex)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("referrers list is not an OCI index: %v", err)
	}
	return im, nil
}

// referrerManifest is what linkSubject reads of a manifest.
type referrerManifest struct {
	ArtifactType string            `json:"artifactType"`
	Config       *v1.Descriptor    `json:"config"`
	Subject      *v1.Descriptor    `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// linkSubject makes m, just written, findable from its subject (when it
// has one) as a referrer: nothing to do when the registry said it took
// the subject (OCI-Subject) or has the referrers API; otherwise m is added
// to the subject's referrers tag index, as the distribution spec's
// referrers tag schema asks of clients.
func (w *repoWriter) linkSubject(ctx context.Context, m *manifestSpec, ociSubject string) error {
	var rm referrerManifest
	if err := json.Unmarshal(m.raw, &rm); err != nil || rm.Subject == nil {
		return nil
	}
	sub := rm.Subject.Digest
	if ociSubject == sub.String() {
		return nil
	}
	if _, api, err := w.referrersAPI(ctx, sub, ""); err != nil || api {
		return err
	}
	im, err := w.referrersTagIndex(ctx, sub)
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		if d.Digest == m.digest {
			return nil
		}
	}
	desc := v1.Descriptor{MediaType: m.mediaType, Digest: m.digest, Size: int64(len(m.raw)), ArtifactType: rm.ArtifactType, Annotations: rm.Annotations}
	if desc.ArtifactType == "" && rm.Config != nil {
		desc.ArtifactType = string(rm.Config.MediaType)
	}
	im.SchemaVersion, im.MediaType = 2, types.OCIImageIndex
	im.Manifests = append(im.Manifests, desc)
	raw, err := json.Marshal(im)
	if err != nil {
		return err
	}
	idx := &manifestSpec{raw: raw, mediaType: types.OCIImageIndex, digest: sha256Of(raw)}
	tag := ReferrersTag(w.repo, sub)
	if _, err := w.putManifest(ctx, idx, tag.TagStr()); err != nil {
		return fmt.Errorf("updating the referrers tag %s: %w", tag, err)
	}
	return nil
}
