package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/registry"
)

type pullFlags struct {
	platform     string
	allPlatforms bool
	quiet        bool
	creds        string
}

func newPullCommand(g *globals) *cobra.Command {
	var f pullFlags
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Download an image from a registry into the local store",
		Long: "Download an image (its layers, config and manifest) into the local store and tag it\n" +
			"with its name. From an index, the image for --platform (default: this machine's) is\n" +
			"pulled, or with --all-platforms the whole index. Layers the store has are not\n" +
			"downloaded again. Prints the full image name on stdout.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd.Context(), cmd, g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.platform, "platform", "", "platform to pull from an index (os/arch[/variant]; default: this machine's)")
	fl.BoolVar(&f.allPlatforms, "all-platforms", false, "pull every platform of an index and store the index")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the image name, no progress")
	fl.StringVar(&f.creds, "creds", "", "USERNAME[:PASSWORD] for the registry (instead of the auth files)")
	return cmd
}

// dockerName shows a reference as docker does after a pull:
// docker.io/library/busybox:latest.
func dockerName(ref name.Reference) string {
	s := ref.Name()
	if strings.HasPrefix(s, "index.docker.io/") {
		s = "docker.io/" + strings.TrimPrefix(s, "index.docker.io/")
	}
	return s
}

func runPull(ctx context.Context, cmd *cobra.Command, g *globals, f *pullFlags, image string) error {
	if err := g.checkRegistryFlags(cmd); err != nil {
		return err
	}
	if f.allPlatforms && f.platform != "" {
		return errors.New("--platform and --all-platforms cannot be used together")
	}
	ro := g.registryOptions(cmd)
	ref, err := g.registryClient(cmd).ParseReference(stripTransport(image))
	if err != nil {
		return err
	}
	if f.creds != "" {
		c, err := g.credsOption("--creds", ref.Context().RegistryStr(), f.creds)
		if err != nil {
			return err
		}
		ro.Credentials = append(ro.Credentials, c)
	}
	var platform *v1.Platform
	if f.platform != "" {
		if platform, err = plat.Parse(f.platform); err != nil {
			return fmt.Errorf("--platform: %w", err)
		}
	}
	st, err := g.openStore(ctx, cmd)
	if err != nil {
		return err
	}
	rep, err := g.reporter(f.quiet)
	if err != nil {
		return err
	}
	defer rep.Close()
	var logw io.Writer
	if g.textLog(f.quiet) {
		logw = g.stderr
	}
	if logw != nil {
		fmt.Fprintf(logw, "%s: Pulling from %s\n", ref.Identifier(), ref.Context().RepositoryStr())
	}
	pulled, err := registry.New(ro).WithProgress(rep).Pull(ctx, st, ref, platform, f.allPlatforms)
	if err != nil {
		return err
	}
	rep.Close()
	if logw != nil {
		fmt.Fprintf(logw, "Digest: %s\n", pulled.Top.Digest)
		if pulled.UpToDate {
			fmt.Fprintf(logw, "Status: Image is up to date for %s\n", displayRepo(ref.Name()))
		} else {
			fmt.Fprintf(logw, "Status: Downloaded newer image for %s\n", displayRepo(ref.Name()))
		}
	}
	fmt.Fprintln(g.stdout, dockerName(ref))
	return nil
}
