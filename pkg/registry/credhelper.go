package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Credential helpers speak the docker-credential-helpers protocol: the
// program docker-credential-NAME is run with one of the actions get, store
// or erase and reads its request on stdin (the server URL for get and
// erase, a JSON object for store); it answers get with a JSON object and
// says "credentials not found" on stdout when it has none.

var helperName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// helperTimeout bounds one credential helper run.
const helperTimeout = 60 * time.Second

// helperServerURL is what docker passes to a credential helper for host.
func helperServerURL(host string) string {
	if host == dockerHubRegistry {
		return dockerHubAuthKey
	}
	return host
}

// errHelperNotFound is execHelper's error when the helper answered
// "credentials not found".
var errHelperNotFound = errors.New("credentials not found")

// execHelper runs `docker-credential-<helper> <action>` with stdin and
// returns its stdout. Messages are built from the helper's first line of
// output, with secret (if any) masked. A helper that is not installed is an
// error wrapping exec.ErrNotFound.
func execHelper(ctx context.Context, helper, action, serverURL string, stdin []byte, secret string) ([]byte, error) {
	if !helperName.MatchString(helper) {
		return nil, fmt.Errorf("invalid credential helper name %q", helper)
	}
	prog := "docker-credential-" + helper
	path, err := exec.LookPath(prog)
	if err != nil {
		return nil, fmt.Errorf("credential helper %s: %w", prog, exec.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(orBackground(ctx), helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, action)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := strings.TrimSpace(stdout.String())
		if strings.Contains(strings.ToLower(out), "credentials not found") {
			return nil, errHelperNotFound
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("credential helper %s %s %s: %w", prog, action, serverURL, ctx.Err())
		}
		var secrets []string
		if secret != "" {
			secrets = []string{secret}
			if q, err := json.Marshal(secret); err == nil {
				secrets = append(secrets, strings.Trim(string(q), `"`))
			}
		}
		// Masked before being cut, so no part of the secret survives.
		msg := firstLine(redact(out, secrets))
		if msg == "" {
			msg = firstLine(redact(strings.TrimSpace(stderr.String()), secrets))
		}
		if msg != "" {
			return nil, fmt.Errorf("credential helper %s %s %s: %v: %s", prog, action, serverURL, err, msg)
		}
		return nil, fmt.Errorf("credential helper %s %s %s: %w", prog, action, serverURL, err)
	}
	return stdout.Bytes(), nil
}

// helperGet asks helper for the credentials of serverURL; found is false
// when it has none.
func helperGet(ctx context.Context, helper, serverURL string) (authn.AuthConfig, bool, error) {
	out, err := execHelper(ctx, helper, "get", serverURL, []byte(serverURL), "")
	if errors.Is(err, errHelperNotFound) {
		return authn.AuthConfig{}, false, nil
	}
	if err != nil {
		return authn.AuthConfig{}, false, err
	}
	var resp struct {
		ServerURL string `json:"ServerURL"`
		Username  string `json:"Username"`
		Secret    string `json:"Secret"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return authn.AuthConfig{}, false, fmt.Errorf("credential helper docker-credential-%s get %s: answer is not valid JSON", helper, serverURL)
	}
	if resp.Username == "" && resp.Secret == "" {
		return authn.AuthConfig{}, false, nil
	}
	if resp.Username == "<token>" {
		return authn.AuthConfig{IdentityToken: resp.Secret}, true, nil
	}
	return authn.AuthConfig{Username: resp.Username, Password: resp.Secret}, true, nil
}

// helperStore gives helper the credentials of serverURL to keep, as
// `docker login` does for a registry with a credential helper.
func helperStore(ctx context.Context, helper, serverURL, username, secret string) error {
	req, err := json.Marshal(struct {
		ServerURL string `json:"ServerURL"`
		Username  string `json:"Username"`
		Secret    string `json:"Secret"`
	}{serverURL, username, secret})
	if err != nil {
		return err
	}
	_, err = execHelper(ctx, helper, "store", serverURL, req, secret)
	return err
}

// helperErase asks helper to forget serverURL's credentials; found is false
// when it had none.
func helperErase(ctx context.Context, helper, serverURL string) (found bool, err error) {
	_, err = execHelper(ctx, helper, "erase", serverURL, []byte(serverURL), "")
	if errors.Is(err, errHelperNotFound) {
		return false, nil
	}
	return err == nil, err
}

// firstLine returns s's first line, at most 200 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
