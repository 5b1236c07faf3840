package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox/confine"
)

// The Pod Security Standards level follows the settings that decide it.
func TestPodLevel(t *testing.T) {
	all := confine.DefaultCaps()
	for _, c := range []struct {
		name string
		e    env
		want string
	}{
		{"unconfined", env{uid: 1000, seccomp: "0", capBnd: all}, "privileged"},
		{"sys_admin", env{uid: 0, seccomp: "2", capBnd: all | 1<<21}, "privileged"},
		{"docker root", env{uid: 0, seccomp: "2", capBnd: all}, "baseline"},
		{"docker 1000", env{uid: 1000, seccomp: "2", capBnd: all}, "baseline"},
		{"caps dropped, escalation allowed", env{uid: 1000, seccomp: "2"}, "baseline"},
		{"restricted", env{uid: 1000, seccomp: "2", noNewPrivs: true}, "restricted"},
		{"restricted with NET_BIND_SERVICE", env{uid: 1000, seccomp: "2", noNewPrivs: true, capBnd: 1 << 10}, "restricted"},
	} {
		if got, why := podLevel(&c.e); got != c.want {
			t.Errorf("%s: level %s (%s), want %s", c.name, got, why, c.want)
		}
	}
}

// A limiting setting is never "ok" and always says how to lift it.
func TestFindingsLimit(t *testing.T) {
	refused := errors.New("operation not permitted")
	for _, c := range []struct {
		name string
		f    Finding
		fix  string
	}{
		{"seccomp refusing userns", seccompFinding(&env{seccomp: "2", maxUserns: "100", usernsErr: refused}), "seccompProfile: {type: Unconfined}"},
		{"no_new_privs as 1000", nnpFinding(&env{uid: 1000, noNewPrivs: true}), "allowPrivilegeEscalation: true"},
		{"userns refused by seccomp", usernsFinding(&env{seccomp: "2", maxUserns: "100", usernsErr: refused}), "seccomp=unconfined"},
		{"userns off on the node", usernsFinding(&env{maxUserns: "0", usernsErr: refused}), "user.max_user_namespaces"},
		{"root without caps", capFinding(&env{uid: 0}, nil), "add: [CHOWN, DAC_OVERRIDE"},
		{"root without SYS_ADMIN", capFinding(&env{uid: 0, capEff: 1<<0 | 1<<1 | 1<<3 | 1<<6 | 1<<7 | 1<<18 | 1<<27}, &Sandbox{impl: newChrootMode(helper{})}), "seccompProfile: {type: Unconfined}"},
		{"store on overlayfs", storeFinding(&env{storeFS: "overlayfs", tmpFS: "overlayfs"}, &Sandbox{impl: newChrootMode(helper{})}, "/s"), "KILN_ROOT"},
		{"masked /proc in userns", procFinding(&env{procMasked: []string{"/proc/kcore"}}, &Sandbox{impl: newUsernsMode(helper{userns: true})}), "procMount: Unmasked"},
	} {
		if !c.f.Limits {
			t.Errorf("%s: labelled ok: %+v", c.name, c.f)
			continue
		}
		if !strings.Contains(strings.Join(c.f.Fix, "\n"), c.fix) {
			t.Errorf("%s: fix %q, want it to hold %q", c.name, c.f.Fix, c.fix)
		}
	}
	// And what does not limit is ok.
	for _, f := range []Finding{
		seccompFinding(&env{seccomp: "2", maxUserns: "100"}),
		nnpFinding(&env{uid: 0, noNewPrivs: true}),
		storeFinding(&env{storeFS: "ext4", tmpFS: "tmpfs"}, &Sandbox{impl: newUsernsMode(helper{userns: true, overlay: true})}, "/s"),
		procFinding(&env{procMasked: []string{"/proc/kcore"}}, &Sandbox{impl: newChrootMode(helper{})}),
	} {
		if f.Limits {
			t.Errorf("%s labelled as limiting: %+v", f.Setting, f)
		}
	}
}

func TestSubIDCollision(t *testing.T) {
	e := &env{uid: 1000, name: "nobody-here"}
	if why := subIDCollision(e, "nobody-here", []Range{{Start: 900, Count: 200}}); !strings.Contains(why, "holds this uid") {
		t.Errorf("own uid inside the range: %q", why)
	}
	if !covered([]Range{{0, 65536}}, Range{1001, 64535}) || covered([]Range{{0, 65536}}, Range{100000, 65536}) {
		t.Error("covered: wrong answer for a user-namespaced pod's 65536 ids")
	}
}
