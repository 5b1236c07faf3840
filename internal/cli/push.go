package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

type pushFlags struct {
	digestfile string
	quiet      bool
	creds      string
	allTags    bool
	// accepted for docker's and podman's sake; kiln neither signs nor
	// verifies content trust.
	contentTrust bool
	removeSigs   bool
}

func newPushCommand(g *globals) *cobra.Command {
	var f pushFlags
	cmd := &cobra.Command{
		Use:   "push [flags] IMAGE [DESTINATION]",
		Short: "Push a local image to a registry",
		Long: "Push a local image (by name or ID) to a registry: to its own name, or to DESTINATION\n" +
			"(REGISTRY/REPOSITORY[:TAG], docker:// allowed). Blobs the repository has are skipped,\n" +
			"blobs another repository of that registry has are mounted, the rest are uploaded\n" +
			"--jobs at a time; the manifest goes last. Prints\n" +
			"\"NAME:TAG: digest: sha256:... size: N\" (with -q only the digest).",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := ""
			if len(args) == 2 {
				dest = args[1]
			}
			return runPush(cmd.Context(), cmd, g, &f, args[0], dest)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.digestfile, "digestfile", "", "write the digest of the pushed manifest to this file")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the digest")
	fl.StringVar(&f.creds, "creds", "", "USERNAME[:PASSWORD] for the destination registry (instead of the auth files)")
	fl.BoolVarP(&f.allTags, "all-tags", "a", false, "push every local tag of the repository IMAGE names")
	fl.BoolVar(&f.contentTrust, "disable-content-trust", true, "ignored (docker compatibility)")
	fl.BoolVar(&f.removeSigs, "remove-signatures", false, "ignored (podman compatibility: kiln pushes no signatures)")
	_ = fl.MarkHidden("disable-content-trust")
	_ = fl.MarkHidden("remove-signatures")
	return cmd
}

// stripTransport removes a docker:// prefix (skopeo's and podman's
// spelling of a registry destination).
func stripTransport(s string) string {
	return strings.TrimPrefix(s, "docker://")
}

func runPush(ctx context.Context, cmd *cobra.Command, g *globals, f *pushFlags, image, dest string) error {
	if err := g.checkRegistryFlags(cmd); err != nil {
		return err
	}
	ro := g.registryOptions(cmd)
	var destRef name.Reference
	if dest != "" {
		r, err := g.registryClient(cmd).ParseReference(stripTransport(dest))
		if err != nil {
			return err
		}
		if _, ok := r.(name.Digest); ok {
			return fmt.Errorf("cannot push to %s: a destination names a tag, not a digest", dest)
		}
		destRef = r
	}
	if f.creds != "" {
		host := ""
		if destRef != nil {
			host = destRef.Context().RegistryStr()
		}
		c, err := g.credsOption("--creds", host, f.creds)
		if err != nil {
			return err
		}
		ro.Credentials = append(ro.Credentials, c)
	}
	rc := registry.New(ro)
	st, err := g.openStore(ctx, cmd)
	if err != nil {
		return err
	}
	targets, err := rc.PushTargets(st, image, destRef, f.allTags)
	if err != nil {
		return err
	}
	var last v1.Descriptor
	for _, t := range targets {
		if g.textLog(f.quiet) {
			fmt.Fprintf(g.stderr, "The push refers to repository [%s]\n", displayRepo(t.Refs[0].Context().Name()))
		}
		rep, err := g.reporter(f.quiet)
		if err != nil {
			return err
		}
		desc, err := rc.WithProgress(rep).PushStored(ctx, st, t.Desc, t.Refs)
		rep.Close() // the terminal's last redraw before the result line
		if err != nil {
			return err
		}
		last = desc
		printPushed(g.stdout, f.quiet, t.Refs, desc)
	}
	if f.digestfile != "" {
		if err := writeDigestFile(f.digestfile, last.Digest); err != nil {
			return err
		}
	}
	return nil
}

// textLog reports whether the human-readable lines around a transfer
// ("The push refers to ...", "Digest: ...") go to stderr: not when quiet,
// nor with --progress=json, whose stderr is only JSON objects.
func (g *globals) textLog(quiet bool) bool {
	if quiet {
		return false
	}
	return g.progress != progress.ModeJSON && g.progress != progress.ModeQuiet
}

// printPushed prints docker's closing line of a push for every ref, or
// the digest alone when quiet.
func printPushed(w io.Writer, quiet bool, refs []name.Reference, d v1.Descriptor) {
	if quiet {
		fmt.Fprintln(w, d.Digest)
		return
	}
	for _, r := range refs {
		fmt.Fprintf(w, "%s: digest: %s size: %d\n", displayRepo(r.Name()), d.Digest, d.Size)
	}
}

// writeDigestFile writes "sha256:..." (no newline) to path, atomically.
func writeDigestFile(path string, d v1.Hash) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--digestfile: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(d.String()), 0o644); err != nil {
		return fmt.Errorf("--digestfile: %w", err)
	}
	return nil
}

// pushBuilt pushes a freshly built image (or index) d to every tag, all in
// one Write: registries concurrently, each repository's blobs once, later
// repositories of a registry mounting from the first. The closing lines go
// to stderr (build's stdout is the image ID), nothing when quiet.
func pushBuilt(ctx context.Context, cmd *cobra.Command, g *globals, st *store.Store, d v1.Descriptor, tags []string, quiet bool) error {
	rc := g.registryClient(cmd)
	var refs []name.Reference
	for _, t := range tags {
		r, err := rc.ParseReference(t)
		if err != nil {
			return err
		}
		refs = append(refs, r)
	}
	rep, err := g.reporter(quiet)
	if err != nil {
		return err
	}
	desc, err := rc.WithProgress(rep).PushStored(ctx, st, d, refs)
	rep.Close()
	if err != nil {
		return err
	}
	if g.textLog(quiet) {
		printPushed(g.stderr, false, refs, desc)
	}
	return nil
}
