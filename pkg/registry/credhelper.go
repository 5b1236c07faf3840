package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/google/go-containerregistry/pkg/authn"
)

// Credential helpers speak the docker-credential-helpers protocol: the
// program docker-credential-NAME is run with one of the actions get, store
// or erase and reads its request on stdin (the server URL for get and
// erase, a JSON object for store); it answers get with a JSON object and
// says "credentials not found" on stdout when it has none. The protocol is
// github.com/docker/docker-credential-helpers/client's; kiln only runs the
// program (helperProgram).

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

// errHelperNotFound is runHelper's error when the helper answered
// "credentials not found".
var errHelperNotFound = errors.New("credentials not found")

// helperProgram runs docker-credential-NAME ACTION for the
// docker-credential-helpers client (which owns the protocol: what each
// action reads and answers), bounded by the context's deadline. It keeps
// the error it saw, masked and naming the helper, the action and the
// server, for runHelper to return instead of the client's wrapping (which
// would quote the helper's whole output).
type helperProgram struct {
	ctx                           context.Context
	path, prog, action, serverURL string
	secret                        string
	stdin                         io.Reader
	err                           error
}

func (p *helperProgram) Input(r io.Reader) { p.stdin = r }

func (p *helperProgram) Output() ([]byte, error) {
	cmd := exec.CommandContext(p.ctx, p.path, p.action)
	cmd.Stdin = p.stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	out := strings.TrimSpace(stdout.String())
	if credentials.IsErrCredentialsNotFoundMessage(out) || strings.Contains(strings.ToLower(out), "credentials not found") {
		p.err = errHelperNotFound
		return stdout.Bytes(), p.err
	}
	if p.ctx.Err() != nil {
		p.err = fmt.Errorf("credential helper %s %s %s: %w", p.prog, p.action, p.serverURL, p.ctx.Err())
		return nil, p.err
	}
	var secrets []string
	if p.secret != "" {
		secrets = []string{p.secret}
		if q, err := json.Marshal(p.secret); err == nil {
			secrets = append(secrets, strings.Trim(string(q), `"`))
		}
	}
	// Masked before being cut, so no part of the secret survives.
	msg := firstLine(redact(out, secrets))
	if msg == "" {
		msg = firstLine(redact(strings.TrimSpace(stderr.String()), secrets))
	}
	if msg != "" {
		p.err = fmt.Errorf("credential helper %s %s %s: %v: %s", p.prog, p.action, p.serverURL, err, msg)
	} else {
		p.err = fmt.Errorf("credential helper %s %s %s: %w", p.prog, p.action, p.serverURL, err)
	}
	return nil, p.err
}

// runHelper calls the client (call) with docker-credential-<helper>. A
// helper that is not installed is an error wrapping exec.ErrNotFound; one
// that answered "credentials not found" gives errHelperNotFound; secret
// (if any) is masked in messages.
func runHelper(ctx context.Context, helper, serverURL, secret string, call func(client.ProgramFunc) error) error {
	if !helperName.MatchString(helper) {
		return fmt.Errorf("invalid credential helper name %q", helper)
	}
	prog := "docker-credential-" + helper
	path, err := exec.LookPath(prog)
	if err != nil {
		return fmt.Errorf("credential helper %s: %w", prog, exec.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(orBackground(ctx), helperTimeout)
	defer cancel()
	var last *helperProgram
	err = call(func(args ...string) client.Program {
		last = &helperProgram{ctx: ctx, path: path, prog: prog, action: args[0], serverURL: serverURL, secret: secret}
		return last
	})
	if err != nil && last != nil && last.err != nil {
		return last.err
	}
	if err != nil {
		return fmt.Errorf("credential helper %s %s: %w", prog, serverURL, err)
	}
	return nil
}

// helperGet asks helper for the credentials of serverURL; found is false
// when it has none.
func helperGet(ctx context.Context, helper, serverURL string) (authn.AuthConfig, bool, error) {
	var c *credentials.Credentials
	err := runHelper(ctx, helper, serverURL, "", func(pf client.ProgramFunc) (err error) {
		c, err = client.Get(pf, serverURL)
		return err
	})
	if errors.Is(err, errHelperNotFound) {
		return authn.AuthConfig{}, false, nil
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
		return authn.AuthConfig{}, false, fmt.Errorf("credential helper docker-credential-%s get %s: answer is not valid JSON", helper, serverURL)
	}
	if err != nil {
		return authn.AuthConfig{}, false, err
	}
	if c.Username == "" && c.Secret == "" {
		return authn.AuthConfig{}, false, nil
	}
	if c.Username == "<token>" {
		return authn.AuthConfig{IdentityToken: c.Secret}, true, nil
	}
	return authn.AuthConfig{Username: c.Username, Password: c.Secret}, true, nil
}

// helperStore gives helper the credentials of serverURL to keep, as
// `docker login` does for a registry with a credential helper.
func helperStore(ctx context.Context, helper, serverURL, username, secret string) error {
	return runHelper(ctx, helper, serverURL, secret, func(pf client.ProgramFunc) error {
		return client.Store(pf, &credentials.Credentials{ServerURL: serverURL, Username: username, Secret: secret})
	})
}

// helperErase asks helper to forget serverURL's credentials; found is false
// when it had none.
func helperErase(ctx context.Context, helper, serverURL string) (found bool, err error) {
	err = runHelper(ctx, helper, serverURL, "", func(pf client.ProgramFunc) error { return client.Erase(pf, serverURL) })
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
