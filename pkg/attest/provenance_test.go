package attest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
)

// TestProvenanceSchema: the provenance statements kiln makes, min and
// max, from a local and from a git context, are in-toto v0.1 statements
// of SLSA v0.2 provenance as the in-toto project's Go definitions and the
// SLSA spec have them (testutil.CheckSLSAProvenance), and the check
// itself refuses what the definitions do not allow.
func TestProvenanceSchema(t *testing.T) {
	t.Parallel()
	digest := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	plat := &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	start := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC)
	base := MaterialOf("127.0.0.1:5000/library/debian:12", v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}, plat)
	git := GitMaterial("https://example.com/org/app.git", "refs/tags/v1", strings.Repeat("e", 40))
	for name, o := range map[string]ProvenanceOptions{
		"min": {BuilderID: BuilderID("v1.2.3"), DockerfileName: "Dockerfile", Materials: []Material{base}, Platform: plat,
			Started: start, Finished: start.Add(time.Second)},
		"max": {Max: true, BuilderID: BuilderID("dev"), DockerfileName: "docker/Dockerfile", Dockerfile: []byte("FROM debian\n"),
			BuildArgs: map[string]string{"PLAIN": "v", "TOKEN": "t0ken-value"}, Labels: map[string]string{"a": "b"}, Target: "app",
			Secrets: []string{"t0ken-value"}, Materials: []Material{base}, Platform: plat, Started: start, Finished: start.Add(time.Minute)},
		"max git": {Max: true, BuilderID: BuilderID("v1.2.3"), DockerfileName: "Dockerfile", Dockerfile: []byte("FROM scratch\n"),
			ConfigSource: git, Started: start, Finished: start},
	} {
		b, err := json.Marshal(NewStatement(SLSAProvenancePredicate, Provenance(o), "127.0.0.1:5000/team/app:1", digest, plat))
		testutil.Require(t, err)
		if err := testutil.CheckSLSAProvenance(b); err != nil {
			t.Errorf("%s: %v\n%s", name, err, b)
		}
		if strings.Contains(string(b), "t0ken-value") {
			t.Errorf("%s: a secret in the provenance:\n%s", name, b)
		}
	}

	good, err := json.Marshal(NewStatement(SLSAProvenancePredicate, Provenance(ProvenanceOptions{BuilderID: BuilderID("v1"), Materials: []Material{base}}),
		"app:1", digest, nil))
	testutil.Require(t, err)
	for want, edit := range map[string]func(map[string]any){
		`unknown field "extra"`: func(s map[string]any) { s["predicate"].(map[string]any)["extra"] = 1 },
		`builder.id "kiln-v1"`:  func(s map[string]any) { s["predicate"].(map[string]any)["builder"] = map[string]any{"id": "kiln-v1"} },
		`_type`:                 func(s map[string]any) { s["_type"] = "https://in-toto.io/Statement/v1" },
		`predicateType`:         func(s map[string]any) { s["predicateType"] = SPDXPredicateType },
		`no subject`:            func(s map[string]any) { s["subject"] = []any{} },
		`is not the hex`: func(s map[string]any) {
			s["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": "abc"}
		},
		`cannot unmarshal`: func(s map[string]any) { s["predicate"].(map[string]any)["materials"] = "none" },
		`materials[0].uri`: func(s map[string]any) {
			s["predicate"].(map[string]any)["materials"] = []any{map[string]any{"uri": ""}}
		},
		`buildType "" is not a URI`: func(s map[string]any) { s["predicate"].(map[string]any)["buildType"] = "" },
	} {
		var s map[string]any
		testutil.Require(t, json.Unmarshal(good, &s))
		edit(s)
		b, _ := json.Marshal(s)
		if err := testutil.CheckSLSAProvenance(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a statement with %s: %v", want, err)
		}
	}
}
