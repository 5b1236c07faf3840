package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/kiln-build/kiln/pkg/atomicfile"
)

// loginTarget is a parsed `login` argument.
type loginTarget struct {
	host string // canonical registry host, e.g. index.docker.io, reg.example.com:5000
	path string // repository namespace for podman's per-repository keys, usually empty
	key  string // the auth file key to write
}

// parseLoginTarget accepts what docker login and podman login accept: ""
// (Docker Hub), "host[:port]", "https://host[:port]/v1/" (the scheme and
// path of a URL are dropped), and podman's "host/namespace[/repo]" for a
// credential that applies to that namespace only.
func parseLoginTarget(s string) (loginTarget, error) {
	raw := s
	s = strings.TrimSpace(s)
	legacy := false
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme != "http" && scheme != "https" {
			return loginTarget{}, fmt.Errorf("invalid registry %q: unsupported scheme %q", raw, scheme)
		}
		s = s[i+3:]
		legacy = true
	}
	host, path, _ := strings.Cut(s, "/")
	if legacy {
		path = ""
	}
	path = strings.Trim(path, "/")
	if host == "" {
		if s != "" {
			return loginTarget{}, fmt.Errorf("invalid registry %q: no host", raw)
		}
		host = dockerHubRegistry
	}
	host = canonicalHost(host)
	if _, err := name.NewRegistry(host); err != nil {
		return loginTarget{}, fmt.Errorf("invalid registry %q: %v", raw, err)
	}
	if path != "" {
		if _, err := name.NewRepository(host + "/" + path); err != nil {
			return loginTarget{}, fmt.Errorf("invalid registry %q: bad repository namespace %q", raw, path)
		}
	}
	t := loginTarget{host: host, path: path}
	switch {
	case host == dockerHubRegistry && path == "":
		t.key = dockerHubAuthKey
	case host == dockerHubRegistry:
		t.key = "docker.io/" + path
	case path == "":
		t.key = host
	default:
		t.key = host + "/" + path
	}
	return t, nil
}

func (t loginTarget) String() string {
	if t.path != "" {
		return displayHost(t.host) + "/" + t.path
	}
	return displayHost(t.host)
}

// LoginAuthFile is the file Login writes, chosen as podman and docker
// would: Options.AuthFile or $REGISTRY_AUTH_FILE if set; else
// $XDG_RUNTIME_DIR/containers/auth.json when $XDG_RUNTIME_DIR names an
// existing directory (podman's choice on a desktop session); else docker's
// $DOCKER_CONFIG/config.json or ~/.docker/config.json, which is what CI jobs
// (where XDG_RUNTIME_DIR is normally unset) and their later docker-based
// steps expect. Every file written is also read by Keychain; only a
// credential for the same registry in a file that Keychain reads earlier
// (see Client.Keychain) would take precedence over a fresh login.
func (c *Client) LoginAuthFile() (string, error) {
	if f := c.o.explicitAuthFile(); f != "" {
		return f, nil
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return filepath.Join(d, "containers", "auth.json"), nil
		}
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", errors.New("cannot choose an auth file: no home directory ($HOME unset); use --authfile")
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// Stored says where Login put credentials.
type Stored struct {
	// File is the auth file written (LoginAuthFile).
	File string
	// Helper is the credential helper that keeps the password
	// ("docker-credential-NAME"), or "" when File holds it.
	Helper string
	// HelperFrom says which setting chose Helper: "credHelpers" or
	// "credsStore".
	HelperFrom string
}

// Login checks username and password against registry the way docker login
// does (GET /v2/, then the basic or bearer-token flow the registry asks
// for) and, if they are accepted, stores them as docker login does: with
// the credential helper that c.LoginAuthFile() names for the registry (its
// "credHelpers" entry, else its "credsStore"), leaving an empty entry under
// "auths" in the file; or, with no helper, in the file itself (SaveAuth). A
// refusal is an ErrUnauthorized error "login to HOST failed:
// unauthorized". The password never appears in an error.
func (c *Client) Login(ctx context.Context, registry, username, password string) (Stored, error) {
	ctx = orBackground(ctx)
	t, err := parseLoginTarget(registry)
	if err != nil {
		return Stored{}, err
	}
	fail := func(kind error, why string, cause error) error {
		msg := fmt.Sprintf("login to %s failed: %s", t, why)
		return &Error{Kind: kind, Registry: t.host, msg: redact(msg, []string{password}), err: scrubbed{cause, password}}
	}
	if username == "" {
		return Stored{}, fail(nil, "username is empty", nil)
	}
	if password == "" {
		return Stored{}, fail(nil, "password is empty", nil)
	}
	if strings.Contains(username, ":") {
		return Stored{}, fail(nil, "username must not contain ':'", nil)
	}
	file, err := c.LoginAuthFile()
	if err != nil {
		return Stored{}, err
	}

	var nopts []name.Option
	if c.o.allowsPlainHTTP(t.host) {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(t.host, nopts...)
	if err != nil {
		return Stored{}, fail(nil, err.Error(), err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	rt := transport.NewUserAgent(c.rt, c.o.userAgent())
	scopes := []string{}
	if t.path != "" {
		scopes = []string{reg.Repo(t.path).Scope(transport.PullScope)}
	}
	tr, err := transport.NewWithContext(ctx, reg, auth, rt, scopes)
	if err != nil {
		return Stored{}, loginError(ctx, t, err, fail)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return Stored{}, fail(nil, err.Error(), err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return Stored{}, loginError(ctx, t, err, fail)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return Stored{}, loginError(ctx, t, err, fail)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return storeCredentials(ctx, file, t, username, password)
}

// storeCredentials keeps username and password for t: with the auth
// file's credential helper for t.host if it has one, else in the file.
func storeCredentials(ctx context.Context, file string, t loginTarget, username, password string) (Stored, error) {
	stored := Stored{File: file}
	path, top, auths, err := loadRawAuthFile(file)
	if err != nil {
		return Stored{}, err
	}
	helper, from, err := helperSetting(file, top, t.host)
	if err != nil {
		return Stored{}, err
	}
	if helper == "" {
		return stored, SaveAuth(file, t.key, username, password)
	}
	stored.Helper, stored.HelperFrom = "docker-credential-"+helper, from
	if t.path != "" {
		return Stored{}, fmt.Errorf("login to %s: %s %q in %s keeps credentials per registry, not per namespace: log in to %s, or use --authfile for a file of its own",
			t, from, helper, file, displayHost(t.host))
	}
	if err := helperStore(ctx, helper, helperServerURL(t.host), username, password); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return Stored{}, fmt.Errorf("login to %s: storing the credentials: %s in %s names docker-credential-%s, which is not installed (install it, remove %s from the file, or use --authfile)",
				t, from, file, helper, from)
		}
		return Stored{}, fmt.Errorf("login to %s: storing the credentials: %w", t, err)
	}
	// docker leaves an empty entry: the registry is listed as logged in and
	// the helper holds the secret. Other spellings of the key go.
	for k := range auths {
		if h, p := splitAuthKey(k); h == t.host && p == t.path {
			delete(auths, k)
		}
	}
	auths[t.key] = json.RawMessage("{}")
	if err := writeRawAuthFile(path, top, auths); err != nil {
		return Stored{}, err
	}
	return stored, nil
}

// helperSetting returns the credential helper an auth file names for host
// (its "credHelpers" entry, else its "credsStore") and which setting named
// it; "" when the file keeps credentials itself.
func helperSetting(file string, top map[string]json.RawMessage, host string) (helper, from string, err error) {
	var f struct {
		CredHelpers map[string]string `json:"credHelpers"`
		CredsStore  string            `json:"credsStore"`
	}
	raw, err := json.Marshal(top)
	if err == nil {
		err = json.Unmarshal(raw, &f)
	}
	if err != nil {
		return "", "", fmt.Errorf("auth file %s: \"credHelpers\" or \"credsStore\" is malformed", file)
	}
	keys := make([]string, 0, len(f.CredHelpers))
	for k := range f.CredHelpers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if h, p := splitAuthKey(k); h == host && p == "" && f.CredHelpers[k] != "" {
			return f.CredHelpers[k], "credHelpers", nil
		}
	}
	if f.CredsStore != "" {
		return f.CredsStore, "credsStore", nil
	}
	return "", "", nil
}

// loginError maps a failed login check to a message.
func loginError(ctx context.Context, t loginTarget, err error, fail func(error, string, error) error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden ||
			hasCode(te, transport.UnauthorizedErrorCode) || hasCode(te, transport.DeniedErrorCode) {
			return fail(ErrUnauthorized, "unauthorized"+registrySaid(te), err)
		}
		if te.StatusCode == http.StatusTooManyRequests {
			return fail(ErrRateLimited, "rate limited (429 Too Many Requests)", err)
		}
		return fail(nil, fmt.Sprintf("registry answered %d %s", te.StatusCode, http.StatusText(te.StatusCode)), err)
	}
	if ctx.Err() != nil {
		return fail(nil, ctx.Err().Error(), err)
	}
	if reach := unreachableReason(err); reach != "" {
		return fail(ErrUnreachable, fmt.Sprintf("cannot reach registry %s: %s", displayHost(t.host), reach), err)
	}
	return fail(nil, err.Error(), err)
}

// scrubbed wraps an error so that its text never shows secret.
type scrubbed struct {
	err    error
	secret string
}

func (s scrubbed) Error() string {
	if s.err == nil {
		return ""
	}
	return redact(s.err.Error(), []string{s.secret})
}

func (s scrubbed) Unwrap() error { return s.err }

// SaveAuth stores username and password for registry (as parsed by Login:
// "host[:port]", a URL, "" or docker.io for Docker Hub, or
// "host/namespace" for a per-namespace key) in the auth file, docker's
// format: {"auths": {KEY: {"auth": base64("user:password")}}}. Everything
// else in the file is kept; other spellings of the same key (e.g.
// "https://host") are replaced. The file is written atomically (temporary
// file, fsync, rename) with mode 0600, its directory created 0700. A
// symlinked file is updated at its target.
func SaveAuth(file, registry, username, password string) error {
	if file == "" {
		return errors.New("save credentials: no auth file given")
	}
	t, err := parseLoginTarget(registry)
	if err != nil {
		return err
	}
	if strings.Contains(username, ":") {
		return fmt.Errorf("save credentials for %s: username must not contain ':'", t)
	}
	path, top, auths, err := loadRawAuthFile(file)
	if err != nil {
		return err
	}
	for k := range auths {
		if h, p := splitAuthKey(k); h == t.host && p == t.path && k != t.key {
			delete(auths, k)
		}
	}
	entry, err := json.Marshal(map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(username + ":" + password)),
	})
	if err != nil {
		return fmt.Errorf("save credentials for %s: %w", t, err)
	}
	auths[t.key] = entry
	if err := writeRawAuthFile(path, top, auths); err != nil {
		return err
	}
	return nil
}

// ErrNotLoggedIn is Logout's error when no auth file had credentials for
// the registry.
var ErrNotLoggedIn = errors.New("not logged in")

// Logout removes the credentials for registry from every auth file that
// Keychain reads (Options.AuthFile or $REGISTRY_AUTH_FILE included), under any
// spelling of its key, and asks the credential helper each file names for
// the registry (credHelpers, else credsStore) to erase them, as docker
// logout does. It is an ErrNotLoggedIn error if no file and no helper had
// them.
func (c *Client) Logout(ctx context.Context, registry string) error {
	t, err := parseLoginTarget(registry)
	if err != nil {
		return err
	}
	files := c.o.authFiles()
	removed := false
	erased := map[string]bool{} // helpers already asked
	for _, f := range files {
		if _, err := os.Lstat(f); errors.Is(err, os.ErrNotExist) {
			continue
		}
		path, top, auths, err := loadRawAuthFile(f)
		if err != nil {
			return fmt.Errorf("logout from %s: %w", t, err)
		}
		helper, from, err := helperSetting(f, top, t.host)
		if err != nil {
			return fmt.Errorf("logout from %s: %w", t, err)
		}
		if helper != "" && t.path == "" && !erased[helper] {
			erased[helper] = true
			found, err := helperErase(ctx, helper, helperServerURL(t.host))
			switch {
			case errors.Is(err, exec.ErrNotFound) && from == "credsStore":
				// A credsStore that is not installed holds nothing here
				// (Keychain skips it too).
			case err != nil:
				return fmt.Errorf("logout from %s: %s in %s: %w", t, from, f, err)
			case found:
				removed = true
			}
		}
		changed := false
		for k := range auths {
			if h, p := splitAuthKey(k); h == t.host && p == t.path {
				delete(auths, k)
				changed = true
			}
		}
		if !changed {
			continue
		}
		if err := writeRawAuthFile(path, top, auths); err != nil {
			return fmt.Errorf("logout from %s: %w", t, err)
		}
		removed = true
	}
	if !removed {
		return fmt.Errorf("%w to %s (no credentials in %s)", ErrNotLoggedIn, t, strings.Join(files, ", "))
	}
	return nil
}

// loadRawAuthFile reads file (following a symlink) keeping every field:
// it returns the real path, the top-level object and its "auths" object.
// A missing file gives empty objects.
func loadRawAuthFile(file string) (string, map[string]json.RawMessage, map[string]json.RawMessage, error) {
	path := file
	if resolved, err := filepath.EvalSymlinks(file); err == nil {
		path = resolved
	}
	top := map[string]json.RawMessage{}
	auths := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return path, top, auths, nil
	case err != nil:
		return "", nil, nil, fmt.Errorf("reading auth file %s: %w", file, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return path, top, auths, nil
	}
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return "", nil, nil, fmt.Errorf("auth file %s is not a valid JSON object", file)
	}
	if raw, ok := top["auths"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &auths); err != nil || auths == nil {
			return "", nil, nil, fmt.Errorf("auth file %s: \"auths\" is not a JSON object", file)
		}
	}
	return path, top, auths, nil
}

// writeRawAuthFile writes top with auths atomically, mode 0600.
func writeRawAuthFile(path string, top, auths map[string]json.RawMessage) error {
	a, err := json.Marshal(auths)
	if err != nil {
		return fmt.Errorf("encoding auth file %s: %w", path, err)
	}
	top["auths"] = a
	out, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding auth file %s: %w", path, err)
	}
	out = append(out, '\n')
	return writeFileAtomic(path, out, 0o600)
}

// writeFileAtomic writes data to path atomically, creating its directory
// (0700) if missing.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating directory for %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
