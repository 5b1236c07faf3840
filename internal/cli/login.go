package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/registry"
)

// passwordWarning is what docker prints when the password is on the
// command line, where other users can see it in the process list.
const passwordWarning = "WARNING! Using --password via the CLI is insecure. Use --password-stdin."

type loginFlags struct {
	username      string
	password      string
	passwordStdin bool
	getLogin      bool
}

func newLoginCommand(g *globals) *cobra.Command {
	var f loginFlags
	cmd := &cobra.Command{
		Use:   "login [flags] [REGISTRY]",
		Short: "Log in to a registry (default: Docker Hub)",
		Long: "Check a username and password against REGISTRY and store them, like docker login:\n" +
			"in --authfile or $REGISTRY_AUTH_FILE if set, else $XDG_RUNTIME_DIR/containers/auth.json\n" +
			"when that directory exists, else $DOCKER_CONFIG/config.json or ~/.docker/config.json\n" +
			"(written 0600, atomically). Use --password-stdin in scripts:\n" +
			"  aws ecr get-login-password | kiln login --username AWS --password-stdin REGISTRY",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := ""
			if len(args) == 1 {
				reg = args[0]
			}
			return runLogin(cmd.Context(), cmd, g, &f, reg)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.username, "username", "u", "", "username")
	fl.StringVarP(&f.password, "password", "p", "", "password (insecure: visible in the process list; prefer --password-stdin)")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "read the password from stdin")
	fl.BoolVar(&f.getLogin, "get-login", false, "print the username stored for REGISTRY and exit")
	return cmd
}

// stdinTerminal returns stdin as a terminal file, or nil if it is not one.
func (g *globals) stdinTerminal() *os.File {
	f, ok := g.stdin.(*os.File)
	if !ok || !progress.IsTerminal(f) {
		return nil
	}
	return f
}

func runLogin(ctx context.Context, cmd *cobra.Command, g *globals, f *loginFlags, reg string) error {
	if err := g.checkRegistryFlags(cmd); err != nil {
		return err
	}
	rc := g.registryClient(cmd)
	shown := reg
	if shown == "" {
		shown = "docker.io"
	}
	if f.getLogin {
		return getLogin(ctx, g, rc, reg, shown)
	}
	if cmd.Flags().Changed("password") && f.passwordStdin {
		return errors.New("--password and --password-stdin are mutually exclusive")
	}
	password := f.password
	if cmd.Flags().Changed("password") {
		fmt.Fprintln(g.stderr, passwordWarning)
	}
	username := strings.TrimSpace(f.username)
	tty := g.stdinTerminal()
	var in *bufio.Reader
	if f.passwordStdin {
		if username == "" {
			return errors.New("--password-stdin needs --username")
		}
		b, err := io.ReadAll(io.LimitReader(g.stdin, 1<<20))
		if err != nil {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return errors.New("--password-stdin: stdin is empty")
		}
	}
	if username == "" {
		if tty == nil {
			return fmt.Errorf("login to %s: no --username, and stdin is not a terminal to ask for one", shown)
		}
		fmt.Fprint(g.stderr, "Username: ")
		in = bufio.NewReader(tty)
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("reading the username: %w", err)
		}
		username = strings.TrimSpace(line)
		if username == "" {
			return errors.New("login: username is empty")
		}
	}
	if password == "" {
		if tty == nil {
			return fmt.Errorf("login to %s: no password: use --password-stdin (stdin is not a terminal to ask for one)", shown)
		}
		fmt.Fprint(g.stderr, "Password: ")
		p, err := progress.ReadSecret(tty)
		fmt.Fprintln(g.stderr)
		if err != nil {
			return fmt.Errorf("reading the password: %w", err)
		}
		password = p
	}
	stored, err := rc.Login(ctx, reg, username, password)
	if err != nil {
		return err
	}
	if stored.Helper == "" {
		fmt.Fprintf(g.stderr, "WARNING! Your password will be stored unencrypted in %s.\n", stored.File)
		fmt.Fprintln(g.stderr, "Configure a credential helper to remove this warning (credsStore or credHelpers in that file).")
	}
	fmt.Fprintln(g.stdout, "Login Succeeded")
	return nil
}

// getLogin prints the username kiln would use for reg.
func getLogin(ctx context.Context, g *globals, rc *registry.Client, reg, shown string) error {
	host := reg
	if host == "" {
		host = name.DefaultRegistry
	}
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	host, _, _ = strings.Cut(host, "/")
	r, err := name.NewRegistry(host)
	if err != nil {
		return fmt.Errorf("invalid registry %q: %v", reg, err)
	}
	a, err := authn.Resolve(ctx, rc.Keychain(), r)
	if err != nil {
		return err
	}
	if a == authn.Anonymous {
		return fmt.Errorf("not logged in to %s", shown)
	}
	cfg, err := a.Authorization()
	if err != nil {
		return err
	}
	if cfg.Username == "" {
		return fmt.Errorf("not logged in to %s with a username (a token is stored)", shown)
	}
	fmt.Fprintln(g.stdout, cfg.Username)
	return nil
}

// credsWarning is printed when a password is given with --creds.
const credsWarning = "WARNING! A password on the command line (%s) is visible to other users; use kiln login --password-stdin instead."

// credsOption turns a --creds style flag's USER[:PASSWORD] into credentials
// for host ("" for every registry of the command). Without a password it
// asks for one on a terminal. It warns when the password was on the
// command line, and never repeats the value.
func (g *globals) credsOption(flag, host, value string) (registry.Credential, error) {
	c, err := registry.ParseCredential(host, value)
	if err != nil {
		return c, fmt.Errorf("%s: %w", flag, err)
	}
	if strings.Contains(value, ":") {
		fmt.Fprintf(g.stderr, credsWarning+"\n", flag)
		return c, nil
	}
	tty := g.stdinTerminal()
	if tty == nil {
		return c, fmt.Errorf("%s %s: no password, and stdin is not a terminal to ask for one", flag, c.Username)
	}
	fmt.Fprintf(g.stderr, "Password for %s: ", c.Username)
	p, err := progress.ReadSecret(tty)
	fmt.Fprintln(g.stderr)
	if err != nil {
		return c, fmt.Errorf("reading the password: %w", err)
	}
	c.Password = p
	return c, nil
}
