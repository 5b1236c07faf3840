package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Requirement is one entry of a policy.json requirement list.
type Requirement struct {
	Type string `json:"type"`
	// signedBy (GPG) and sigstoreSigned keys.
	KeyType  string   `json:"keyType,omitempty"`
	KeyPath  string   `json:"keyPath,omitempty"`
	KeyPaths []string `json:"keyPaths,omitempty"`
	KeyData  string   `json:"keyData,omitempty"`
	KeyDatas []string `json:"keyDatas,omitempty"`
	// Keyless (Fulcio, PKI) and Rekor settings of sigstoreSigned.
	Fulcio              json.RawMessage `json:"fulcio,omitempty"`
	PKI                 json.RawMessage `json:"pki,omitempty"`
	RekorPublicKeyPath  string          `json:"rekorPublicKeyPath,omitempty"`
	RekorPublicKeyPaths []string        `json:"rekorPublicKeyPaths,omitempty"`
	RekorPublicKeyData  string          `json:"rekorPublicKeyData,omitempty"`
	RekorPublicKeyDatas []string        `json:"rekorPublicKeyDatas,omitempty"`
	SignedIdentity      *SignedIdentity `json:"signedIdentity,omitempty"`
	// signedBaseLayer.
	BaseLayerIdentity *SignedIdentity `json:"baseLayerIdentity,omitempty"`
}

// SignedIdentity is a signedIdentity: which reference a signature must name.
type SignedIdentity struct {
	Type             string `json:"type"`
	DockerReference  string `json:"dockerReference,omitempty"`
	DockerRepository string `json:"dockerRepository,omitempty"`
	Prefix           string `json:"prefix,omitempty"`
	SignedPrefix     string `json:"signedPrefix,omitempty"`
}

// The requirement types of containers-policy.json(5).
const (
	TypeAccept          = "insecureAcceptAnything"
	TypeReject          = "reject"
	TypeSignedBy        = "signedBy"
	TypeSigstoreSigned  = "sigstoreSigned"
	TypeSignedBaseLayer = "signedBaseLayer"
)

// Rules are kiln's own rules (kiln-policy.json).
type Rules struct {
	// AllowPush lists the scopes (as transports.docker names them) kiln
	// may write to. nil allows every destination; an empty list none.
	AllowPush *[]string `json:"allowPush,omitempty"`
	// RequireDigest refuses an image a Dockerfile reads (FROM, COPY
	// --from, RUN --mount from) unless it is pinned by digest.
	RequireDigest bool `json:"requireDigest,omitempty"`
	// MirrorsOnly reads Docker Hub only through --registry-mirror.
	MirrorsOnly bool `json:"mirrorsOnly,omitempty"`
}

// Policy is a loaded policy.json and kiln-policy.json.
type Policy struct {
	// Path is the policy.json read ("" when there is none, only kiln's
	// file); RulesPath the kiln-policy.json ("" when there is none).
	Path, RulesPath string
	Default         []Requirement
	// Docker are transports.docker's scopes.
	Docker map[string][]Requirement
	Rules  Rules
	// broken is why the policy could not be loaded (see Broken).
	broken error
}

// Broken is a policy that could not be loaded: every read and write it is
// asked about fails with err, so that a broken file never opens the door.
func Broken(err error) *Policy { return &Policy{broken: err} }

// Err is why the policy could not be loaded (nil: it was).
func (p *Policy) Err() error {
	if p == nil {
		return nil
	}
	return p.broken
}

// RulesFile is the name of kiln's own rules file, next to policy.json.
const RulesFile = "kiln-policy.json"

// Locate returns the policy.json to use: flag (--signature-policy), else
// $KILN_POLICY, else the user's and the system's containers policy, the
// first that exists. A flag or variable naming a missing file is an
// error. "" with no error means there is no policy file.
func Locate(flag string, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, c := range []struct{ what, path string }{{"--signature-policy", flag}, {"KILN_POLICY", getenv("KILN_POLICY")}} {
		if c.path == "" {
			continue
		}
		if _, err := os.Stat(c.path); err != nil {
			return "", fmt.Errorf("%s %s: %w", c.what, c.path, unwrapPath(err))
		}
		return c.path, nil
	}
	var dirs []string
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		dirs = append(dirs, filepath.Join(x, "containers"))
	} else if h := getenv("HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, ".config", "containers"))
	}
	dirs = append(dirs, "/etc/containers")
	for _, d := range dirs {
		for _, f := range []string{"policy.json", RulesFile} {
			if _, err := os.Stat(filepath.Join(d, f)); err == nil {
				return filepath.Join(d, f), nil
			}
		}
	}
	return "", nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Load finds (see Locate) and reads the policy. nil with no error means
// there is none: everything is allowed, as before policies existed.
func Load(flag string, getenv func(string) string) (*Policy, error) {
	path, err := Locate(flag, getenv)
	if err != nil || path == "" {
		return nil, err
	}
	return ReadFile(path)
}

// ReadFile reads a policy.json and the kiln-policy.json next to it (or,
// when path names a kiln-policy.json, that alone: every image is then
// accepted by policy.json's measure).
func ReadFile(path string) (*Policy, error) {
	p := &Policy{Default: []Requirement{{Type: TypeAccept}}}
	rulesPath := filepath.Join(filepath.Dir(path), RulesFile)
	if filepath.Base(path) != RulesFile {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if err := p.parse(path, data); err != nil {
			return nil, err
		}
		p.Path = path
	}
	data, err := os.ReadFile(rulesPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("policy: %w", err)
	}
	if err := decodeStrict(rulesPath, data, &p.Rules); err != nil {
		return nil, err
	}
	if p.Rules.AllowPush != nil {
		for _, s := range *p.Rules.AllowPush {
			if err := checkScope(s); err != nil {
				return nil, fmt.Errorf("%s: allowPush: %v", rulesPath, err)
			}
		}
	}
	p.RulesPath = rulesPath
	return p, nil
}

// file is policy.json as written.
type file struct {
	Default    *[]Requirement                      `json:"default"`
	Transports map[string]map[string][]Requirement `json:"transports"`
}

func (p *Policy) parse(path string, data []byte) error {
	var f file
	if err := decodeStrict(path, data, &f); err != nil {
		return err
	}
	if f.Default == nil {
		return fmt.Errorf("%s: no \"default\" requirements (containers-policy.json(5) needs them)", path)
	}
	if err := checkRequirements(path, "default", *f.Default); err != nil {
		return err
	}
	p.Default = *f.Default
	for transport, scopes := range f.Transports {
		for scope, reqs := range scopes {
			where := fmt.Sprintf("transports.%s %q", transport, scope)
			if err := checkRequirements(path, where, reqs); err != nil {
				return err
			}
			if transport != "docker" {
				continue // other transports are not registries kiln reads
			}
			if scope != "" {
				if err := checkScope(scope); err != nil {
					return fmt.Errorf("%s: %s: %v", path, where, err)
				}
			}
			if p.Docker == nil {
				p.Docker = map[string][]Requirement{}
			}
			p.Docker[scope] = reqs
		}
	}
	return nil
}

// decodeStrict decodes one JSON value, refusing unknown keys and trailing
// data; errors name the file, line and column.
func decodeStrict(path string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr == nil {
			return fmt.Errorf("%s:%s: unexpected data after the JSON object", path, lineCol(data, dec.InputOffset()))
		}
		return nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%s:%s: invalid JSON: %v", path, lineCol(data, se.Offset-1), se)
	case errors.As(err, &te):
		what := te.Field
		if what == "" {
			what = "value"
		}
		return fmt.Errorf("%s:%s: %s: want %s, not a JSON %s", path, lineCol(data, te.Offset), what, te.Type, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		at := "1:1"
		if m := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `"\s*:`).FindIndex(data); m != nil {
			at = lineCol(data, int64(m[0]))
		}
		return fmt.Errorf("%s:%s: unknown key %q", path, at, key)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s:%s: empty or truncated JSON", path, lineCol(data, int64(len(data))))
	}
	return fmt.Errorf("%s: %v", path, err)
}

// lineCol turns a byte offset into "line:column" (1-based).
func lineCol(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("%d:%d", line, col)
}

// checkRequirements validates a requirement list the way containers/image
// does: not empty, known types, the keys each type takes.
func checkRequirements(path, where string, reqs []Requirement) error {
	if len(reqs) == 0 {
		return fmt.Errorf("%s: %s: the list of requirements must not be empty", path, where)
	}
	for _, r := range reqs {
		if err := checkRequirement(r); err != nil {
			return fmt.Errorf("%s: %s: %s: %v", path, where, r.describeType(), err)
		}
	}
	return nil
}

func (r Requirement) describeType() string {
	if r.Type == "" {
		return "requirement"
	}
	return fmt.Sprintf("%q", r.Type)
}

func checkRequirement(r Requirement) error {
	keys := 0
	for _, set := range []bool{r.KeyPath != "", r.KeyPaths != nil, r.KeyData != "", r.KeyDatas != nil} {
		if set {
			keys++
		}
	}
	switch r.Type {
	case TypeAccept, TypeReject:
		if keys > 0 || r.SignedIdentity != nil || r.KeyType != "" || r.Fulcio != nil || r.PKI != nil {
			return errors.New("takes no other keys")
		}
	case TypeSignedBy:
		if r.KeyType == "" {
			return errors.New("keyType is required (GPGKeys)")
		}
		if keys != 1 {
			return errors.New("exactly one of keyPath, keyPaths, keyData is required")
		}
	case TypeSigstoreSigned:
		if r.Fulcio != nil || r.PKI != nil {
			keys++
		}
		if keys != 1 {
			return errors.New("exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, pki is required")
		}
	case TypeSignedBaseLayer:
		if r.BaseLayerIdentity == nil {
			return errors.New("baseLayerIdentity is required")
		}
	case "":
		return errors.New(`"type" is required`)
	default:
		return fmt.Errorf("unknown requirement type (known: %s, %s, %s, %s, %s)", TypeAccept, TypeReject, TypeSignedBy, TypeSigstoreSigned, TypeSignedBaseLayer)
	}
	if id := r.SignedIdentity; id != nil {
		switch id.Type {
		case "matchExact", "matchRepoDigestOrExact", "matchRepository":
		case "exactReference":
			if id.DockerReference == "" {
				return errors.New("signedIdentity exactReference needs dockerReference")
			}
		case "exactRepository":
			if id.DockerRepository == "" {
				return errors.New("signedIdentity exactRepository needs dockerRepository")
			}
		case "remapIdentity":
			if id.Prefix == "" || id.SignedPrefix == "" {
				return errors.New("signedIdentity remapIdentity needs prefix and signedPrefix")
			}
		default:
			return fmt.Errorf("unknown signedIdentity type %q", id.Type)
		}
	}
	return nil
}

// checkScope validates a transports.docker scope (or an allowPush entry).
func checkScope(s string) error {
	switch {
	case s == "":
		return errors.New("an empty scope")
	case strings.ContainsAny(s, " \t\n") || strings.Contains(s, "://"):
		return fmt.Errorf("scope %q: want HOST[:PORT][/PATH][:TAG|@DIGEST] or *.DOMAIN", s)
	case strings.HasPrefix(s, "*."):
		if strings.ContainsAny(s[2:], "/*:@") || s[2:] == "" {
			return fmt.Errorf("scope %q: a wildcard names a domain only (*.example.com)", s)
		}
	case strings.Contains(s, "*"):
		return fmt.Errorf("scope %q: * is only allowed as a leading *.DOMAIN", s)
	case strings.HasSuffix(s, "/"):
		return fmt.Errorf("scope %q: ends with /", s)
	}
	return nil
}
