package build

import (
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/dockerfile"
)

// checkPolicy asks the registry policy (pkg/policy), before any image is
// read, about every image the plan's stages name: FROM, COPY --from and
// RUN --mount from=. b.image asks again for each image it reads (names
// made of variables are only known then).
func (b *builder) checkPolicy(plan *dockerfile.Plan) error {
	pol := b.opts.Registry.Options().Policy
	if pol == nil {
		return nil
	}
	check := func(what, ref string, loc []parser.Range) error {
		if strings.EqualFold(ref, "scratch") || strings.Contains(ref, "$") {
			return nil
		}
		if err := b.checkImagePolicy(ref); err != nil {
			return plan.File.Errorf(loc, "%s %s: %v", what, ref, err)
		}
		return nil
	}
	for _, s := range plan.Order {
		if s.BaseStage == nil {
			if err := check("FROM", s.Base, s.Source.Location); err != nil {
				return err
			}
		}
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.CopyCommand:
				if c.From != "" && plan.StageByRef(c.From, s) == nil {
					if err := check("COPY --from", c.From, c.Location()); err != nil {
						return err
					}
				}
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					if m.From != "" && plan.StageByRef(m.From, s) == nil {
						if err := check("RUN --mount from", m.From, c.Location()); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	return nil
}

// checkImagePolicy applies the policy to an image the Dockerfile names
// (or the docker-image:// a --build-context of that name gives):
// requireDigest always, and the read rules when the image will come from
// its registry rather than the local store.
func (b *builder) checkImagePolicy(ref string) error {
	pol := b.opts.Registry.Options().Policy
	if pol == nil {
		return nil
	}
	if nc, ok := b.namedContext(ref); ok {
		if nc.Image == "" {
			return nil // a directory or OCI layout: no registry
		}
		ref = nc.Image
	}
	r, err := b.opts.Registry.ParseReference(ref)
	if err != nil {
		return err
	}
	if err := pol.CheckPinned(r); err != nil {
		return err
	}
	if _, err := b.opts.Store.Resolve(r.Name()); err == nil && b.opts.Pull != PullAlways && b.opts.Pull != PullNewer {
		return nil
	}
	_, err = pol.CheckRead(r)
	return err
}
