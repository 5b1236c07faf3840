package platform

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// archAliases maps common spellings to GOARCH names.
var archAliases = map[string]string{
	"aarch64": "arm64",
	"x86_64":  "amd64",
	"x86-64":  "amd64",
	"i386":    "386",
	"i686":    "386",
	"armhf":   "arm",
	"armel":   "arm",
}

var component = regexp.MustCompile(`^[a-z0-9_.-]+$`)

var knownOS = map[string]bool{
	"linux": true, "windows": true, "darwin": true, "freebsd": true,
	"netbsd": true, "openbsd": true, "solaris": true, "illumos": true,
	"aix": true, "plan9": true, "js": true, "wasip1": true, "android": true,
}

// Parse parses "os/arch[/variant]" ("linux/amd64", "linux/arm64/v8",
// "linux/arm/v7"). A lone architecture means linux; a lone OS means that
// OS on the host's architecture. Architecture aliases such as aarch64 and
// x86_64 are normalised; the variant is kept as written.
func Parse(s string) (*v1.Platform, error) {
	bad := func(why string) error { return fmt.Errorf("invalid platform %q: %s", s, why) }
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return nil, bad("empty")
	}
	parts := strings.Split(t, "/")
	if len(parts) > 3 {
		return nil, bad("want os/arch[/variant]")
	}
	for _, p := range parts {
		if p == "" {
			return nil, bad("empty component")
		}
		if !component.MatchString(p) {
			return nil, bad(fmt.Sprintf("invalid component %q", p))
		}
	}
	var p v1.Platform
	switch len(parts) {
	case 1:
		if knownOS[parts[0]] {
			p = v1.Platform{OS: parts[0], Architecture: runtime.GOARCH}
		} else {
			p = v1.Platform{OS: "linux", Architecture: parts[0]}
		}
	case 2:
		p = v1.Platform{OS: parts[0], Architecture: parts[1]}
	case 3:
		p = v1.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
	}
	if !knownOS[p.OS] {
		return nil, bad(fmt.Sprintf("unknown operating system %q", p.OS))
	}
	switch p.Architecture {
	case "armhf":
		if p.Variant == "" {
			p.Variant = "v7"
		}
	case "armel":
		if p.Variant == "" {
			p.Variant = "v6"
		}
	}
	if a, ok := archAliases[p.Architecture]; ok {
		p.Architecture = a
	}
	return &p, nil
}

// Format formats p as os/arch[/variant].
func Format(p v1.Platform) string {
	if p.OS == "" {
		// containerd's Format says "unknown" for this; keep what it is.
		return "/" + p.Architecture + variantSuffix(p.Variant)
	}
	return platforms.Format(specs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
}

func variantSuffix(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

// Default is the host's platform (BUILDPLATFORM, and the platform pulled
// and built when none is given), written as BuildKit writes it: on 32-bit
// ARM with the variant the CPU has.
func Default() v1.Platform {
	return fromSpec(platforms.Normalize(platforms.DefaultSpec()))
}

// Normalize writes p as BuildKit (containerd) does: aliases resolved, no
// variant for arm64/v8 and amd64/v1, v7 for a bare arm.
func Normalize(p v1.Platform) v1.Platform {
	n := platforms.Normalize(specs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
	p.OS, p.Architecture, p.Variant = n.OS, n.Architecture, n.Variant
	return p
}

func fromSpec(s specs.Platform) v1.Platform {
	return v1.Platform{OS: s.OS, Architecture: s.Architecture, Variant: s.Variant, OSVersion: s.OSVersion, OSFeatures: s.OSFeatures}
}

// explicit returns p with the architecture alias resolved and the variant
// made explicit where docker and containerd imply one.
func explicit(p v1.Platform) v1.Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	if a, ok := archAliases[p.Architecture]; ok {
		p.Architecture = a
	}
	if p.Variant == "" {
		switch p.Architecture {
		case "arm64":
			p.Variant = "v8"
		case "arm":
			p.Variant = "v7"
		case "amd64":
			p.Variant = "v1"
		}
	}
	return p
}

// Score says how well an image for have serves want: 0 = not at all,
// 1 = usable (want names no variant, and any variant of an architecture
// other than arm and arm64 runs), 2 = exact (default variants made
// explicit: arm64 is v8, arm v7, amd64 v1).
func Score(want, have v1.Platform) int {
	w, h := explicit(want), explicit(have)
	if w.OS != h.OS || w.Architecture != h.Architecture {
		return 0
	}
	if w.Variant == h.Variant {
		return 2
	}
	if want.Variant == "" && w.Architecture != "arm" && w.Architecture != "arm64" {
		return 1
	}
	return 0
}

// Matches reports whether an image for have serves want: the same OS and
// architecture, and the variant asked for (any variant when want names
// none).
func Matches(have, want v1.Platform) bool {
	w, h := explicit(want), explicit(have)
	if w.OS != h.OS || w.Architecture != h.Architecture {
		return false
	}
	return want.Variant == "" || w.Variant == h.Variant
}
