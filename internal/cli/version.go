package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is kiln's release version, set at link time by the release build
// (-ldflags "-X github.com/kiln-build/kiln/internal/cli.Version=v1.2.3").
// Without it, the module version Go recorded is used ("(devel)" for a
// build from a checkout), and the commit comes from the VCS stamp that
// `go build` writes in a git checkout.
var Version = ""

// Commit is the release's commit, set at link time like Version (a
// -trimpath release build from a temporary copy has no VCS stamp).
var Commit = ""

// buildVersion is what `kiln version` and `kiln --version` print.
type buildVersion struct {
	Version  string
	Commit   string
	Modified bool
	Go       string
	Platform string
}

func versionInfo() buildVersion {
	v := buildVersion{Version: Version, Commit: Commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

func (v buildVersion) shortCommit() string {
	c := v.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if v.Modified {
		c += "-dirty"
	}
	return c
}

// Short is docker's --version line: "kiln version V, build C".
func (v buildVersion) Short() string {
	return fmt.Sprintf("kiln version %s, build %s", v.Version, v.shortCommit())
}

// Long is `kiln version`'s output, one field a line.
func (v buildVersion) Long() string {
	c := v.Commit
	if v.Modified {
		c += " (modified)"
	}
	return fmt.Sprintf("Version:    %s\nCommit:     %s\nGo version: %s\nPlatform:   %s\n", v.Version, c, v.Go, v.Platform)
}
