package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHubAuthKey is the key docker uses for Docker Hub in config.json and
// the server URL it hands to credential helpers.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// The credential chain. A Client's keychain (Client.Keychain) asks these
// sources in order and takes the first credential one has, like
// go-containerregistry's authn.NewMultiKeychain; unlike it, every source says
// where its credential came from, for the messages of refused requests. The
// chain, in podman's and docker's order:
//
//  1. --creds (Options.Credentials), for the registries they name
//  2. each auth file (see Options.AuthFiles), in order:
//     o.AuthFile or $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
//     $XDG_CONFIG_HOME/containers/auth.json (~/.config/containers/auth.json),
//     $DOCKER_CONFIG/config.json, ~/.docker/config.json
//  3. for a private Amazon ECR registry (ACCOUNT.dkr.ecr.REGION.amazonaws.com,
//     see IsECRHost), a token from AWS itself (ecr.go)
//
// Within a file, a "credHelpers" entry for the registry comes first, then
// the most specific "auths" entry (podman's "host/namespace/repo" keys
// before "host"; keys may also be "https://host" or "https://host/v1/"),
// then the "credsStore" helper. Helpers speak the docker-credential-helper
// protocol; one answering "credentials not found" passes the search on. A
// credsStore whose helper is not installed (a copied Docker Desktop
// config's "desktop", say) is skipped; a missing credHelpers helper is an
// error. Docker Hub's names (docker.io, index.docker.io,
// registry-1.docker.io, https://index.docker.io/v1/) are one registry.
// The ECR source asks AWS with the AWS SDK's default credential chain
// (environment variables, IRSA web identity, the pod's or instance's role),
// as the amazon-ecr-credential-helper does; no other registry causes an AWS
// call. Nothing found means anonymous access. A malformed file is an error
// that names the file.
//
// A new credential source of the third kind (a cloud's own credentials for
// its registries) is one file: a type implementing credentialSource and an
// init that calls addPlatformSource, as ecr.go does.

// credentialSource is one link of the credential chain.
type credentialSource interface {
	// credential returns the credential for repo (a path in host, empty
	// for the registry as a whole) of host (canonicalHost), or nil when
	// the source has none and the search goes on.
	credential(ctx context.Context, host, repo string) (*credential, error)
}

// platformSources are asked after the auth files, in the order of their
// files' names: each answers only for its own registries' hosts.
var platformSources []credentialSource

// addPlatformSource adds a source to platformSources; called from the
// init function of the file that implements it.
func addPlatformSource(s credentialSource) { platformSources = append(platformSources, s) }

// newKeychain is the credential chain for o.
func newKeychain(o Options) *keychain {
	helpers := &helperCache{m: map[string]helperResult{}}
	sources := []credentialSource{flagCredentials(o.Credentials)}
	for _, f := range o.authFiles() {
		sources = append(sources, authFileSource{path: f, helpers: helpers})
	}
	sources = append(sources, platformSources...)
	return &keychain{sources: sources}
}

// AuthFiles lists the files Keychain searches for credentials, in order,
// without duplicates (for `kiln doctor` and messages). They need not exist.
func (o Options) AuthFiles() []string { return o.authFiles() }

func (o Options) authFiles() []string {
	var files []string
	add := func(f string) {
		if f == "" {
			return
		}
		for _, g := range files {
			if g == f {
				return
			}
		}
		files = append(files, f)
	}
	add(o.explicitAuthFile())
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		add(filepath.Join(d, "containers", "auth.json"))
	}
	home, _ := os.UserHomeDir()
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		add(filepath.Join(d, "containers", "auth.json"))
	} else if home != "" {
		add(filepath.Join(home, ".config", "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		add(filepath.Join(d, "config.json"))
	}
	if home != "" {
		add(filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// explicitAuthFile is o.AuthFile or $REGISTRY_AUTH_FILE.
func (o Options) explicitAuthFile() string {
	if o.AuthFile != "" {
		return o.AuthFile
	}
	return os.Getenv("REGISTRY_AUTH_FILE")
}

// authFile is the part of podman's auth.json and docker's config.json that
// holds credentials.
type authFile struct {
	Auths       map[string]authEntry `json:"auths"`
	CredHelpers map[string]string    `json:"credHelpers"`
	CredsStore  string               `json:"credsStore"`
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

func (e authEntry) empty() bool {
	return e.Auth == "" && e.Username == "" && e.Password == "" && e.IdentityToken == "" && e.RegistryToken == ""
}

// readAuthFile parses path; a missing file is (nil, nil).
func readAuthFile(path string) (*authFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading auth file %s: %w", path, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return &authFile{}, nil
	}
	var f authFile
	if err := json.Unmarshal(b, &f); err != nil {
		// The decoder's message may quote file content: leave it out.
		return nil, fmt.Errorf("auth file %s is not valid JSON", path)
	}
	return &f, nil
}

// credential is what a lookup found and where.
type credential struct {
	cfg    authn.AuthConfig
	source string // e.g. "/root/.docker/config.json" or "credential helper docker-credential-pass (credsStore in /root/.docker/config.json)"
}

type helperResult struct {
	cfg   authn.AuthConfig
	found bool
}

// keychain implements authn.Keychain and authn.ContextKeychain over a
// chain of credential sources: the first that has a credential wins.
type keychain struct {
	sources []credentialSource
}

// Resolve implements authn.Keychain.
func (k *keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

// ResolveContext implements authn.ContextKeychain.
func (k *keychain) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	c, err := k.lookup(ctx, target)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(c.cfg), nil
}

// lookup finds the credential for target, or nil if there is none.
func (k *keychain) lookup(ctx context.Context, target authn.Resource) (*credential, error) {
	host := canonicalHost(target.RegistryStr())
	repo := ""
	if r, ok := target.(name.Repository); ok {
		repo = r.RepositoryStr()
	} else if r, ok := target.(name.Reference); ok {
		repo = r.Context().RepositoryStr()
	} else if s := target.String(); strings.HasPrefix(s, target.RegistryStr()+"/") {
		repo = strings.TrimPrefix(s, target.RegistryStr()+"/")
	}
	for _, s := range k.sources {
		c, err := s.credential(ctx, host, repo)
		if err != nil || c != nil {
			return c, err
		}
	}
	return nil, nil
}

// flagCredentials are --creds, --src-creds and --dest-creds.
type flagCredentials []Credential

func (fc flagCredentials) credential(_ context.Context, host, _ string) (*credential, error) {
	for _, c := range fc {
		if c.Registry == "" || canonicalHost(c.Registry) == host {
			return &credential{cfg: authn.AuthConfig{Username: c.Username, Password: c.Password}, source: "--creds"}, nil
		}
	}
	return nil, nil
}

// authFileSource is one podman or docker auth file: its credHelpers
// entry, auths entries and credsStore for the registry.
type authFileSource struct {
	path    string
	helpers *helperCache
}

func (a authFileSource) credential(ctx context.Context, host, repo string) (*credential, error) {
	f, err := readAuthFile(a.path)
	if err != nil || f == nil {
		return nil, err
	}
	file := a.path
	helperKeys := make([]string, 0, len(f.CredHelpers))
	for key := range f.CredHelpers {
		helperKeys = append(helperKeys, key)
	}
	sort.Strings(helperKeys)
	for _, key := range helperKeys {
		helper := f.CredHelpers[key]
		if h, p := splitAuthKey(key); h == host && p == "" {
			cfg, found, err := a.helpers.get(ctx, helper, helperServerURL(host))
			if err != nil {
				return nil, fmt.Errorf("credHelpers entry for %s in %s: %w", displayHost(host), file, err)
			}
			if found {
				return &credential{cfg: cfg, source: fmt.Sprintf("credential helper docker-credential-%s (credHelpers in %s)", helper, file)}, nil
			}
			break
		}
	}

	bestKey, bestLen, bestLegacy := "", -1, true
	for key, e := range f.Auths {
		if e.empty() {
			continue
		}
		h, p := splitAuthKey(key)
		if h != host {
			continue
		}
		if p != "" && repo != p && !strings.HasPrefix(repo, p+"/") {
			continue
		}
		legacy := strings.Contains(key, "://")
		if len(p) > bestLen || (len(p) == bestLen && bestLegacy && !legacy) ||
			(len(p) == bestLen && legacy == bestLegacy && key < bestKey) {
			bestKey, bestLen, bestLegacy = key, len(p), legacy
		}
	}
	if bestLen >= 0 {
		cfg, err := entryConfig(f.Auths[bestKey])
		if err != nil {
			return nil, fmt.Errorf("auth file %s, entry %q: %w", file, bestKey, err)
		}
		return &credential{cfg: cfg, source: file}, nil
	}

	if f.CredsStore != "" {
		cfg, found, err := a.helpers.get(ctx, f.CredsStore, helperServerURL(host))
		if errors.Is(err, exec.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("credsStore in %s: %w", file, err)
		}
		if found {
			return &credential{cfg: cfg, source: fmt.Sprintf("credential helper docker-credential-%s (credsStore in %s)", f.CredsStore, file)}, nil
		}
	}
	return nil, nil
}

// entryConfig decodes an "auths" entry.
func entryConfig(e authEntry) (authn.AuthConfig, error) {
	cfg := authn.AuthConfig{
		Username:      e.Username,
		Password:      e.Password,
		IdentityToken: e.IdentityToken,
		RegistryToken: e.RegistryToken,
	}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Auth))
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(e.Auth), "="))
		}
		if err != nil {
			return authn.AuthConfig{}, errors.New(`"auth" is not valid base64`)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return authn.AuthConfig{}, errors.New(`"auth" is not base64 of "username:password"`)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return cfg, nil
}

// canonicalHost lower-cases a registry host and folds Docker Hub's aliases
// into go-containerregistry's name for it, index.docker.io.
func canonicalHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "/"))
	switch h {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return dockerHubRegistry
	}
	return h
}

// displayHost is how messages name a registry: Docker Hub as docker.io.
func displayHost(h string) string {
	if canonicalHost(h) == dockerHubRegistry {
		return "docker.io"
	}
	return h
}

// splitAuthKey parses an auth file key into a canonical host and a
// repository path (empty for a registry-wide key). Keys with a scheme are
// docker's legacy URLs ("https://host/v1/"): only their host counts.
func splitAuthKey(key string) (host, path string) {
	k := strings.TrimSpace(key)
	legacy := false
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
		legacy = true
	}
	host, path, _ = strings.Cut(k, "/")
	if legacy {
		path = ""
	}
	return canonicalHost(host), strings.Trim(path, "/")
}

// helperCache remembers what credential helpers answered, so that one
// keychain runs each helper once per registry.
type helperCache struct {
	mu sync.Mutex
	m  map[string]helperResult // helper + "\x00" + server URL
}

// get runs `docker-credential-<helper> get` with serverURL on stdin.
// found is false when the helper answers "credentials not found".
func (hc *helperCache) get(ctx context.Context, helper, serverURL string) (authn.AuthConfig, bool, error) {
	if !helperName.MatchString(helper) {
		return authn.AuthConfig{}, false, fmt.Errorf("invalid credential helper name %q", helper)
	}
	cacheKey := helper + "\x00" + serverURL
	hc.mu.Lock()
	if r, ok := hc.m[cacheKey]; ok {
		hc.mu.Unlock()
		return r.cfg, r.found, nil
	}
	hc.mu.Unlock()

	cfg, found, err := helperGet(ctx, helper, serverURL)
	if err != nil {
		return cfg, found, err
	}
	hc.mu.Lock()
	hc.m[cacheKey] = helperResult{cfg: cfg, found: found}
	hc.mu.Unlock()
	return cfg, found, nil
}
