package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/build"
)

// fetchGitContext checks a git build context out into a temp directory
// and returns the context directory, what removes it and the source as
// provenance records it (the URL and ref, the commit).
func fetchGitContext(ctx context.Context, cmd *cobra.Command, g *globals, gc build.GitContext) (string, func(), *attest.Material, error) {
	tmp, err := os.MkdirTemp("", "kiln-git-context-")
	if err != nil {
		return "", func() {}, nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	auth, err := gitAuth(ctx, cmd, g, gc)
	if err != nil {
		cleanup()
		return "", func() {}, nil, err
	}
	dir, commit, err := gc.Fetch(ctx, tmp, auth)
	if err != nil {
		cleanup()
		return "", func() {}, nil, err
	}
	return dir, cleanup, attest.GitMaterial(gc.URL, gc.Ref, commit), nil
}

// gitAuth finds the credentials for a git context's HTTP(S) host:
// GIT_AUTH_TOKEN (BuildKit's), GIT_USERNAME and GIT_PASSWORD (kaniko's),
// else the auth files' entry for the host (kiln login HOST). nil: none.
func gitAuth(ctx context.Context, cmd *cobra.Command, g *globals, gc build.GitContext) (*build.GitAuth, error) {
	host := gc.Host()
	if host == "" {
		return nil, nil
	}
	if tok := os.Getenv("GIT_AUTH_TOKEN"); tok != "" {
		return &build.GitAuth{Username: "x-access-token", Password: tok}, nil
	}
	if u, p := os.Getenv("GIT_USERNAME"), os.Getenv("GIT_PASSWORD"); u != "" || p != "" {
		if u == "" {
			u = "x-access-token"
		}
		return &build.GitAuth{Username: u, Password: p}, nil
	}
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		return nil, nil
	}
	a, err := authn.Resolve(ctx, g.registryClient(cmd).Keychain(), reg)
	if err != nil {
		return nil, fmt.Errorf("git context %s: credentials for %s: %w", gc.URL, host, err)
	}
	if a == authn.Anonymous {
		return nil, nil
	}
	cfg, err := a.Authorization()
	if err != nil || cfg.Password == "" {
		return nil, nil
	}
	return &build.GitAuth{Username: cfg.Username, Password: cfg.Password}, nil
}
