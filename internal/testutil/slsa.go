package testutil

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"

	slsa02 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.2"
)

// InTotoStatementV01 is the _type of an in-toto v0.1 statement, the
// envelope buildx's attestations use.
const InTotoStatementV01 = "https://in-toto.io/Statement/v0.1"

// slsaStatement is an in-toto v0.1 statement of SLSA v0.2 provenance as
// BuildKit writes it: in-toto-golang's predicate (the SLSA project's
// definition in Go, which BuildKit itself uses) with BuildKit's typed
// invocation and its extension of the metadata.
type slsaStatement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate slsaPredicate `json:"predicate"`
}

type slsaPredicate struct {
	slsa02.ProvenancePredicate
	Invocation struct {
		ConfigSource slsa02.ConfigSource `json:"configSource"`
		Parameters   struct {
			Frontend string            `json:"frontend,omitempty"`
			Args     map[string]string `json:"args,omitempty"`
			Secrets  []struct {
				ID       string `json:"id"`
				Optional bool   `json:"optional,omitempty"`
			} `json:"secrets,omitempty"`
			SSH []struct {
				ID       string   `json:"id"`
				Paths    []string `json:"paths,omitempty"`
				Optional bool     `json:"optional,omitempty"`
			} `json:"ssh,omitempty"`
			Locals []struct {
				Name string `json:"name"`
			} `json:"locals,omitempty"`
		} `json:"parameters"`
		Environment struct {
			Platform string `json:"platform"`
		} `json:"environment"`
	} `json:"invocation"`
	Metadata *struct {
		slsa02.ProvenanceMetadata
		BuildKit *struct {
			VCS    map[string]string `json:"vcs,omitempty"`
			Source *struct {
				Locations map[string]any `json:"locations,omitempty"`
				Infos     []struct {
					Filename string `json:"filename,omitempty"`
					Language string `json:"language,omitempty"`
					Data     []byte `json:"data,omitempty"`
				} `json:"infos,omitempty"`
			} `json:"source,omitempty"`
			Layers map[string]any `json:"layers,omitempty"`
		} `json:"https://mobyproject.org/buildkit@v1#metadata,omitempty"`
		Hermetic bool `json:"https://mobyproject.org/buildkit@v1#hermetic,omitempty"`
	} `json:"metadata,omitempty"`
}

// CheckSLSAProvenance checks an in-toto statement of SLSA provenance
// against the definitions: the statement's fields as in-toto v0.1 defines
// them, the predicate decoded strictly (an unknown or mistyped field is an
// error) into in-toto-golang's SLSA v0.2 types with BuildKit's extensions,
// and the fields SLSA v0.2 requires (builder.id and buildType as URIs,
// each material's URI, digests as hex of their algorithm's length).
func CheckSLSAProvenance(statement []byte) error {
	dec := json.NewDecoder(bytes.NewReader(statement))
	dec.DisallowUnknownFields()
	var s slsaStatement
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("not an in-toto statement of SLSA v0.2 provenance: %w", err)
	}
	if s.Type != InTotoStatementV01 {
		return fmt.Errorf("_type %q, want %q", s.Type, InTotoStatementV01)
	}
	if s.PredicateType != slsa02.PredicateSLSAProvenance {
		return fmt.Errorf("predicateType %q, want %q", s.PredicateType, slsa02.PredicateSLSAProvenance)
	}
	if len(s.Subject) == 0 {
		return fmt.Errorf("no subject")
	}
	for i, sub := range s.Subject {
		if sub.Name == "" {
			return fmt.Errorf("subject %d has no name", i)
		}
		if err := checkDigestSet(sub.Digest, true); err != nil {
			return fmt.Errorf("subject %s: %w", sub.Name, err)
		}
	}
	p := s.Predicate
	if err := checkURI("builder.id", p.Builder.ID); err != nil {
		return err
	}
	if err := checkURI("buildType", p.BuildType); err != nil {
		return err
	}
	for i, m := range p.Materials {
		if err := checkURI(fmt.Sprintf("materials[%d].uri", i), m.URI); err != nil {
			return err
		}
		if err := checkDigestSet(m.Digest, false); err != nil {
			return fmt.Errorf("material %s: %w", m.URI, err)
		}
	}
	if cs := p.Invocation.ConfigSource; cs.URI != "" || len(cs.Digest) > 0 {
		if err := checkURI("invocation.configSource.uri", cs.URI); err != nil {
			return err
		}
		if err := checkDigestSet(cs.Digest, true); err != nil {
			return fmt.Errorf("invocation.configSource: %w", err)
		}
	}
	if m := p.Metadata; m != nil && m.BuildStartedOn != nil && m.BuildFinishedOn != nil && m.BuildFinishedOn.Before(*m.BuildStartedOn) {
		return fmt.Errorf("metadata: buildFinishedOn %s before buildStartedOn %s", m.BuildFinishedOn, m.BuildStartedOn)
	}
	return nil
}

// checkURI checks a required TypeURI/ResourceURI field (RFC 3986, with a
// scheme).
func checkURI(field, s string) error {
	u, err := url.Parse(s)
	if s == "" || err != nil || u.Scheme == "" {
		return fmt.Errorf("%s %q is not a URI (SLSA v0.2 requires one)", field, s)
	}
	return nil
}

// digestLengths are the hex lengths of the algorithms in-toto's DigestSet
// names.
var digestLengths = map[string]int{"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128, "gitCommit": 40}

func checkDigestSet(d map[string]string, required bool) error {
	if len(d) == 0 {
		if required {
			return fmt.Errorf("no digest")
		}
		return nil
	}
	for alg, v := range d {
		want, ok := digestLengths[alg]
		if _, err := hex.DecodeString(v); !ok || err != nil || len(v) != want {
			return fmt.Errorf("digest %s:%q is not the hex of a known algorithm", alg, v)
		}
	}
	return nil
}
