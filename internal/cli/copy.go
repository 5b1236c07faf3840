package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/registry"
)

type copyFlags struct {
	allTags    bool
	quiet      bool
	digestfile string
	srcCreds   string
	destCreds  string
	// removeSignatures and attachments say what travels with the image
	// (--remove-signatures, --attachments).
	removeSignatures bool
	attachments      bool
}

// localPrefix marks a copy source in the local store.
const localPrefix = "local:"

func newCopyCommand(g *globals) *cobra.Command {
	var f copyFlags
	cmd := &cobra.Command{
		Use:     "copy [flags] SOURCE DESTINATION [DESTINATION...]",
		Aliases: []string{"promote"},
		Short:   "Copy an image or index between registries or repositories, without pulling it",
		Long: "Copy what SOURCE names (a tag or digest; an image, or an index with all its images) to\n" +
			"each DESTINATION, manifests byte for byte so the digest stays. Within one registry no\n" +
			"layer passes through kiln (cross-repository mounts); between registries blobs stream\n" +
			"through, verified, never stored. A DESTINATION without a tag takes SOURCE's tag (or\n" +
			"digest). --all-tags copies every tag of repository SOURCE to repository DESTINATION.\n" +
			"SOURCE may be local:IMAGE for an image of the local store. docker:// prefixes are\n" +
			"accepted. Prints \"NAME:TAG: digest: sha256:... size: N\" per destination.\n\n" +
			"What is attached to the image travels with it, as skopeo copies signatures and cosign\n" +
			"copy attachments: cosign's sha256-<digest>.sig, .att and .sbom tags and OCI 1.1\n" +
			"referrers (signatures, attestations, SBOMs whose subject is the image or one of its\n" +
			"manifests), which the destination then lists through its referrers API or the\n" +
			"sha256-<digest> referrers tag. --remove-signatures leaves signatures out;\n" +
			"--attachments=false copies the image alone.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCopy(cmd.Context(), cmd, g, &f, args[0], args[1:])
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.allTags, "all-tags", "a", false, "copy every tag of repository SOURCE to repository DESTINATION")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the digest")
	fl.StringVar(&f.digestfile, "digestfile", "", "write the digest of the copied manifest to this file")
	fl.StringVar(&f.srcCreds, "src-creds", "", "USERNAME[:PASSWORD] for the source registry")
	fl.StringVar(&f.destCreds, "dest-creds", "", "USERNAME[:PASSWORD] for the destination registry")
	fl.BoolVar(&f.removeSignatures, "remove-signatures", false, "do not copy signatures (cosign's .sig tags and signature referrers), as skopeo's flag")
	fl.BoolVar(&f.attachments, "attachments", true, "copy what is attached to the image: cosign's .sig/.att/.sbom tags and OCI 1.1 referrers")
	return cmd
}

func runCopy(ctx context.Context, cmd *cobra.Command, g *globals, f *copyFlags, srcArg string, dstArgs []string) error {
	if err := g.checkRegistryFlags(cmd); err != nil {
		return err
	}
	ro := g.registryOptions(cmd)
	local := strings.HasPrefix(srcArg, localPrefix)
	srcText := stripTransport(strings.TrimPrefix(srcArg, localPrefix))
	dstTexts := make([]string, len(dstArgs))
	for i, a := range dstArgs {
		dstTexts[i] = stripTransport(a)
	}
	src, dsts, err := g.registryClient(cmd).CopyTargets(srcText, dstTexts, local, f.allTags)
	if err != nil {
		return err
	}
	if f.srcCreds != "" && src != nil {
		c, err := g.credsOption("--src-creds", src.Context().RegistryStr(), f.srcCreds)
		if err != nil {
			return err
		}
		ro.Credentials = append(ro.Credentials, c)
	}
	if f.destCreds != "" {
		c, err := g.credsOption("--dest-creds", "", f.destCreds)
		if err != nil {
			return err
		}
		for _, d := range dsts {
			c.Registry = d.Context().RegistryStr()
			ro.Credentials = append(ro.Credentials, c)
		}
	}
	rep, err := g.reporter(f.quiet)
	if err != nil {
		return err
	}
	defer rep.Close()
	rc := registry.New(ro).WithProgress(rep)

	if f.allTags {
		var last v1.Hash
		var failed int
		err := rc.CopyAllTags(ctx, src.Context(), dsts[0].Context(), f.attachedOptions(), func(tc registry.TagCopy) {
			if tc.Err != nil {
				failed++
				fmt.Fprintf(g.stderr, "%s: %v\n", displayRepo(tc.Dst.Name()), tc.Err)
				return
			}
			last = tc.Descriptor.Digest
			printPushed(g.stdout, f.quiet, []name.Reference{tc.Dst}, tc.Descriptor)
		})
		if err != nil {
			if failed > 0 {
				return fmt.Errorf("%d tags of %s failed to copy", failed, displayRepo(src.Context().Name()))
			}
			return err
		}
		if f.digestfile != "" {
			return writeDigestFile(f.digestfile, last)
		}
		return nil
	}
	var desc v1.Descriptor
	if local {
		st, err := g.openStore(ctx, cmd)
		if err != nil {
			return err
		}
		d, _, err := resolveLocal(st, g, srcText)
		if err != nil {
			return err
		}
		if desc, err = rc.PushStored(ctx, st, d, dsts); err != nil {
			return err
		}
	} else {
		if desc, err = rc.Copy(ctx, src, dsts); err != nil {
			return err
		}
		if err := f.copyAttached(ctx, g, rc, src.Context(), dsts, desc.Digest); err != nil {
			return err
		}
	}
	rep.Close()
	printPushed(g.stdout, f.quiet, dsts, desc)
	if f.digestfile != "" {
		return writeDigestFile(f.digestfile, desc.Digest)
	}
	return nil
}

// attachedOptions is what --remove-signatures and --attachments ask for.
func (f *copyFlags) attachedOptions() *registry.AttachedOptions {
	if !f.attachments {
		return nil
	}
	return &registry.AttachedOptions{NoSignatures: f.removeSignatures}
}

// copyAttached carries what is attached to digest in src to every
// destination repository.
func (f *copyFlags) copyAttached(ctx context.Context, g *globals, rc *registry.Client, src name.Repository, dsts []name.Reference, digest v1.Hash) error {
	ao := f.attachedOptions()
	if ao == nil {
		return nil
	}
	done := map[string]bool{}
	for _, d := range dsts {
		repo := d.Context()
		if done[repo.Name()] {
			continue
		}
		done[repo.Name()] = true
		err := rc.CopyAttached(ctx, src, repo, digest, *ao, func(a registry.Attached) {
			if !f.quiet {
				fmt.Fprintf(g.stderr, "Copied %s %s to %s\n", a.Kind, displayRepo(a.Src.Name()), displayRepo(a.Dst.Name()))
			}
		})
		if err != nil {
			return fmt.Errorf("copying what is attached to %s: %w", displayRepo(src.Digest(digest.String()).Name()), err)
		}
	}
	return nil
}
