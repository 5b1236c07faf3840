package attest

import (
	"encoding/base64"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ProvenanceOptions describe a build for its provenance.
type ProvenanceOptions struct {
	// Max is mode=max: the Dockerfile and the build arguments are added.
	Max bool
	// BuilderID identifies the builder: a URI, as SLSA v0.2 requires
	// (BuilderID gives kiln's).
	BuilderID string
	// DockerfileName and Dockerfile are the Dockerfile's name and content.
	DockerfileName string
	Dockerfile     []byte
	// BuildArgs are --build-arg values; Labels --label values; Target the
	// stage built.
	BuildArgs map[string]string
	Labels    map[string]string
	Target    string
	// Secrets are values that must never appear (secrets' contents): a
	// build argument holding one is left out.
	Secrets []string
	// Materials are the images the build read.
	Materials []Material
	// ConfigSource, for a git context, is the repository (URL#ref) and
	// the commit built: BuildKit's invocation.configSource uri and digest,
	// and a material. A local context is recorded as BuildKit records it:
	// not as a material, and as the "context" local in mode=max.
	ConfigSource *Material
	// Platform is the image's platform.
	Platform *v1.Platform
	// Started and Finished bound the build.
	Started, Finished time.Time
}

// BuilderID is kiln's builder.id for a kiln version: its package URL
// (pkg:golang/github.com/kiln-build/kiln@VERSION), a URI as SLSA v0.2's
// builder.id must be.
func BuilderID(version string) string {
	return "pkg:golang/github.com/kiln-build/kiln@" + version
}

// Material is an image the build read.
type Material struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest"`
}

// MaterialOf is the SLSA material of an image reference and its digest, as
// buildx writes it (pkg:docker/NAME@TAG?platform=…).
func MaterialOf(ref string, d v1.Hash, p *v1.Platform) Material {
	return Material{URI: subjectName(ref, p), Digest: map[string]string{d.Algorithm: d.Hex}}
}

// GitMaterial is a git context as BuildKit's provenance names it: the
// repository URL with #ref when one was asked for, and the commit (sha1).
func GitMaterial(url, ref, commit string) *Material {
	if ref != "" {
		url += "#" + ref
	}
	return &Material{URI: url, Digest: map[string]string{"sha1": commit}}
}

// secretName matches build arguments whose names say they carry secrets;
// their values never enter a provenance document.
var secretName = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSW(OR)?D|PASS$|CREDENTIAL|AUTH|(^|_)KEY($|_)|PRIVATE|APIKEY|ACCESS_KEY|SESSION)`)

// SecretArg reports whether a build argument's name marks it as a secret.
func SecretArg(name string) bool { return secretName.MatchString(name) }

// Provenance is the SLSA v0.2 predicate buildx attaches.
func Provenance(o ProvenanceOptions) map[string]any {
	params := map[string]any{"frontend": "dockerfile.v0"}
	complete := map[string]bool{"parameters": o.Max, "environment": true, "materials": false}
	if o.Max {
		args := map[string]string{}
		for k, v := range o.BuildArgs {
			if SecretArg(k) || holdsSecret(v, o.Secrets) {
				continue
			}
			args["build-arg:"+k] = v
		}
		for k, v := range o.Labels {
			if !holdsSecret(v, o.Secrets) {
				args["label:"+k] = v
			}
		}
		if o.Target != "" {
			args["target"] = o.Target
		}
		if o.DockerfileName != "" {
			args["filename"] = o.DockerfileName
		}
		params["args"] = args
		params["locals"] = []map[string]string{{"name": "context"}, {"name": "dockerfile"}}
	}
	env := map[string]any{}
	if o.Platform != nil {
		env["platform"] = o.Platform.OS + "/" + o.Platform.Architecture + suffix(o.Platform.Variant)
	}
	mats := append([]Material{}, o.Materials...)
	configSource := map[string]any{"entryPoint": o.DockerfileName}
	if o.ConfigSource != nil {
		mats = append(mats, *o.ConfigSource)
		configSource["uri"], configSource["digest"] = o.ConfigSource.URI, o.ConfigSource.Digest
	}
	sort.Slice(mats, func(i, j int) bool { return mats[i].URI < mats[j].URI })
	meta := map[string]any{
		"buildStartedOn":  o.Started.UTC().Format(time.RFC3339Nano),
		"buildFinishedOn": o.Finished.UTC().Format(time.RFC3339Nano),
		"completeness":    complete,
		"reproducible":    false,
	}
	if o.Max && o.Dockerfile != nil && !holdsSecret(string(o.Dockerfile), o.Secrets) {
		meta["https://mobyproject.org/buildkit@v1#metadata"] = map[string]any{
			"source": map[string]any{"infos": []map[string]string{{
				"filename": o.DockerfileName, "language": "Dockerfile",
				"data": base64.StdEncoding.EncodeToString(o.Dockerfile)}}},
		}
	}
	return map[string]any{
		"builder":   map[string]string{"id": o.BuilderID},
		"buildType": "https://mobyproject.org/buildkit@v1",
		"materials": mats,
		"invocation": map[string]any{
			"configSource": configSource,
			"parameters":   params,
			"environment":  env,
		},
		"metadata": meta,
	}
}

func suffix(variant string) string {
	if variant == "" {
		return ""
	}
	return "/" + variant
}

func holdsSecret(s string, secrets []string) bool {
	for _, sec := range secrets {
		if len(sec) >= 4 && strings.Contains(s, sec) {
			return true
		}
	}
	return false
}
