package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/policy"
)

// TestDoctorPolicyReport: kiln doctor's policy part names the policy and
// kiln rules files in effect, says when there is none, and says when the
// policy cannot be used (and why).
func TestDoctorPolicyReport(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.json")
	testutil.Require(t, os.WriteFile(file, []byte(`{"default": [{"type": "insecureAcceptAnything"}]}`), 0o644))
	testutil.Require(t, os.WriteFile(filepath.Join(dir, policy.RulesFile), []byte(`{"mirrorsOnly": true}`), 0o644))
	bad := filepath.Join(t.TempDir(), "policy.json")
	testutil.Require(t, os.WriteFile(bad, []byte(`{"default": [`), 0o644))
	load := func(f string) *policy.Policy {
		p, err := policy.Load(f, nil)
		if err != nil {
			return policy.Broken(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		p    *policy.Policy
		want []string
	}{
		{"files", load(file), []string{"registry policy: " + file + "\n", "kiln rules: " + filepath.Join(dir, policy.RulesFile), "kiln policy check [--push] REF"}},
		{"none", nil, []string{"registry policy: none (", "every registry may be read and pushed to"}},
		{"broken", load(bad), []string{"registry policy: unusable", bad}},
	} {
		var b strings.Builder
		writePolicyReport(&b, c.p)
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: the report does not say %q:\n%s", c.name, w, b.String())
			}
		}
	}
}
