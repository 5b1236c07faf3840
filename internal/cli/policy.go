package cli

import (
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/policy"
	"github.com/kiln-build/kiln/pkg/registry"
)

// policyCache loads the registry policy once per command.
type policyCache struct {
	once sync.Once
	p    *policy.Policy
}

// loadPolicy is the registry policy (--signature-policy, KILN_POLICY, the
// containers locations); nil when there is no file. A file that cannot be
// read or parsed gives a policy that refuses everything with that error.
func (g *globals) loadPolicy() *policy.Policy {
	g.policy.once.Do(func() {
		p, err := policy.Load(g.policyFlag, nil)
		if err != nil {
			p = policy.Broken(err)
		}
		g.policy.p = p
	})
	return g.policy.p
}

// supplyChainCommands are policy, sign and verify.
func supplyChainCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newPolicyCommand(g), newSignCommand(g), newVerifyCommand(g)}
}

func newPolicyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Show the registry policy that applies to images",
	}
	var push bool
	check := &cobra.Command{
		Use:   "check [--push] REF...",
		Short: "Say which policy rule applies to each reference; exit 1 if one is refused",
		Long: "Prints, for each reference, the rule of policy.json and kiln-policy.json that\n" +
			"decides reading it (FROM, pull, copy sources, --cache-from), pushing to it,\n" +
			"and naming it in a Dockerfile. Exits 1 when a reference would be refused\n" +
			"reading (with --push: as a push destination). Nothing is sent to any registry.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := g.loadPolicy()
			if err := p.Err(); err != nil {
				return err
			}
			switch {
			case p == nil:
				fmt.Fprintln(g.stdout, "policy: "+noPolicy)
			case p.Path != "":
				fmt.Fprintf(g.stdout, "policy: %s\n", p.Path)
			}
			if p != nil && p.RulesPath != "" {
				fmt.Fprintf(g.stdout, "kiln rules: %s\n", p.RulesPath)
			}
			refused := 0
			for _, a := range args {
				ref, err := registry.ParseReference(a)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, policy.Identity(ref))
				for _, l := range p.Explain(ref) {
					fmt.Fprintf(g.stdout, "  %s\n", l)
				}
				var perr error
				if push {
					perr = p.CheckWrite(ref)
				} else {
					_, perr = p.CheckRead(ref)
				}
				if perr != nil {
					refused++
				}
			}
			if refused > 0 {
				return fmt.Errorf("%d of %d references refused by the policy", refused, len(args))
			}
			return nil
		},
	}
	check.Flags().BoolVar(&push, "push", false, "check the references as push destinations")
	cmd.AddCommand(check)
	return cmd
}

// noPolicy says where a policy was looked for and not found.
const noPolicy = "none (no --signature-policy, KILN_POLICY, ~/.config/containers/policy.json or /etc/containers/policy.json)"

// writePolicyReport is kiln doctor's part about the registry policy: the
// files in effect (or why there are none, or why they cannot be used) and
// the command that says which rule applies to a reference.
func writePolicyReport(w io.Writer, p *policy.Policy) {
	switch {
	case p.Err() != nil:
		fmt.Fprintf(w, "registry policy: unusable, every registry read and push is refused until it is fixed:\n  %v\n", p.Err())
		return
	case p == nil:
		fmt.Fprintf(w, "registry policy: %s: every registry may be read and pushed to\n", noPolicy)
		return
	case p.Path != "":
		fmt.Fprintf(w, "registry policy: %s\n", p.Path)
	default:
		fmt.Fprintln(w, "registry policy: no policy.json")
	}
	if p.RulesPath != "" {
		fmt.Fprintf(w, "  kiln rules: %s\n", p.RulesPath)
	}
	fmt.Fprintln(w, "  which rule applies to an image: kiln policy check [--push] REF...")
}

// checkPushPolicy refuses, before the build starts, a --push to a
// destination the policy does not allow.
func (g *globals) checkPushPolicy(tags []string) error {
	p := g.loadPolicy()
	for _, t := range tags {
		r, err := registry.ParseReference(t)
		if err != nil {
			return err
		}
		if err := p.CheckWrite(r); err != nil {
			return err
		}
	}
	return nil
}
