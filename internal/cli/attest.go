package cli

import (
	"time"

	"github.com/kiln-build/kiln/pkg/build"
)

// attach gives res the SBOM and provenance --sbom, --provenance and
// --attest ask for (build.Attest), for the build of o started at started.
func (f *buildFlags) attach(res *build.Result, o build.Options, tags []string, started time.Time, ociArtifact bool) error {
	name := ""
	if len(tags) > 0 {
		name = tags[0]
	}
	return build.Attest(res, o, build.AttestOptions{Request: f.attestReq, Name: name, DockerfileName: frontendFilename(o.DockerfileName, o.ContextDir),
		Version: versionInfo().Version, ConfigSource: f.gitSource, Started: started, OCIArtifact: ociArtifact})
}
