package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// kilnUser runs kiln the way one CI job would: with its own HOME (so
// ~/.docker/config.json is its own), its own store (--root), and an
// environment stripped of the caller's registry settings (credentials
// files, CA variables, proxies, AWS credentials). Extra variables are set
// with setenv.
type kilnUser struct {
	home string
	root string
	env  map[string]string
	// runs keeps every command's outcome, for checks over all output.
	runs []run
}

// strippedEnv are environment variables (or prefixes ending in '_' or
// '*') that never pass from the test process to kiln.
var strippedEnv = []string{
	"HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
	"no_proxy", "ALL_PROXY", "all_proxy", "AWS_*", "KILN_*", "REGISTRY_*",
}

// newKilnUser makes a user with a fresh HOME and store.
func newKilnUser(t *testing.T) *kilnUser {
	t.Helper()
	home := t.TempDir()
	return &kilnUser{home: home, root: filepath.Join(home, "store"), env: map[string]string{"HOME": home}}
}

// setenv sets a variable for the user's kiln commands.
func (u *kilnUser) setenv(k, v string) { u.env[k] = v }

// environ is the environment of the user's kiln commands.
func (u *kilnUser) environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, s := range strippedEnv {
			if k == s || strings.HasSuffix(s, "*") && strings.HasPrefix(k, strings.TrimSuffix(s, "*")) {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	for k, v := range u.env {
		out = append(out, k+"="+v)
	}
	return out
}

// command returns kiln with --root and args, in the user's environment,
// not started.
func (u *kilnUser) command(ctx context.Context, t *testing.T, stdin io.Reader, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, testutil.KilnBinary(t), append([]string{"--root", u.root}, args...)...)
	cmd.Env = u.environ()
	cmd.Stdin = stdin
	cmd.Dir = u.home
	return cmd
}

// run runs kiln with args (stdin from stdin if not empty) and returns the
// outcome without judging it.
func (u *kilnUser) run(t *testing.T, stdin string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kilnTimeout)
	defer cancel()
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	cmd := u.command(ctx, t, in, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, errors.New("timed out after "+kilnTimeout.String()))
	}
	r := run{args: append([]string{"--root", u.root}, args...), stdout: stdout.String(), stderr: stderr.String(), err: err}
	u.runs = append(u.runs, r)
	return r
}

// ok runs kiln and fails the test unless it exits 0.
func (u *kilnUser) ok(t *testing.T, args ...string) run {
	t.Helper()
	r := u.run(t, "", args...)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r)
	}
	return r
}

// fails runs kiln and fails the test if it exits 0.
func (u *kilnUser) fails(t *testing.T, args ...string) run {
	t.Helper()
	r := u.run(t, "", args...)
	if r.err == nil {
		t.Fatalf("succeeded, want a failure\n%s", r)
	}
	return r
}

// login runs `kiln FLAGS login -u USER --password-stdin HOST` with the
// password on stdin and fails the test unless it succeeds.
func (u *kilnUser) login(t *testing.T, s *testutil.RegistrySetup, flags ...string) run {
	t.Helper()
	args := append(append(s.KilnFlags(), flags...), "login", "-u", s.User, "--password-stdin", s.Addr)
	r := u.run(t, s.Password, args...)
	if r.err != nil {
		t.Fatalf("login: %v\n%s", r.err, r)
	}
	return r
}

// noSecrets fails the test if any secret occurs in the output of any
// command the user ran.
func (u *kilnUser) noSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	for _, r := range u.runs {
		for _, s := range secrets {
			if s != "" && (strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s)) {
				t.Errorf("a secret (%.6s...) appears in the output of\n%s", s, r)
			}
		}
	}
}

// pushedLine matches kiln push's closing line "NAME:TAG: digest: D size: N".
var pushedLine = regexp.MustCompile(`^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$`)

// pushedDigest returns the digest that kiln push or copy printed for ref
// (its closing line "REF: digest: sha256:... size: N"), failing the test if
// there is none.
func pushedDigest(t *testing.T, r run, ref string) string {
	t.Helper()
	for _, l := range strings.Split(r.stdout+r.stderr, "\n") {
		if m := pushedLine.FindStringSubmatch(strings.TrimSpace(l)); m != nil && m[1] == ref {
			return m[2]
		}
	}
	t.Fatalf("no line %q in the output\n%s", ref+": digest: sha256:... size: N", r)
	return ""
}

// hasWord reports whether s contains word, ignoring case.
func hasWord(s, word string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(word))
}
