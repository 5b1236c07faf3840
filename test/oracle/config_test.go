package oracle

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// configLines renders the parts of an image config that a Dockerfile
// controls, one "Field: value" line each, for comparison.
func configLines(cf *v1.ConfigFile) []string {
	c := cf.Config
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	keys := func(m map[string]struct{}) string {
		ks := make([]string, 0, len(m))
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return js(ks)
	}
	var empty []string
	for _, h := range cf.History {
		if h.EmptyLayer {
			empty = append(empty, "empty")
		} else {
			empty = append(empty, "layer")
		}
	}
	// arm64's v8 is its only variant: dockerd 20.10's BuildKit drops it
	// from the config of a --platform build, later BuildKit keeps the
	// base's (containerd's platforms.Normalize treats both as one).
	platform := cf.OS + "/" + cf.Architecture
	if cf.Variant != "" && !(cf.Architecture == "arm64" && cf.Variant == "v8") {
		platform += "/" + cf.Variant
	}
	lines := []string{
		"Platform: " + platform,
		"Env: " + js(c.Env),
		"Cmd: " + js(c.Cmd),
		"Entrypoint: " + js(c.Entrypoint),
		"WorkingDir: " + js(c.WorkingDir),
		"User: " + js(c.User),
		"ExposedPorts: " + keys(c.ExposedPorts),
		"Volumes: " + keys(c.Volumes),
		"Labels: " + js(c.Labels),
		"OnBuild: " + js(c.OnBuild),
		"StopSignal: " + js(c.StopSignal),
		"Healthcheck: " + js(c.Healthcheck),
		"Shell: " + js(c.Shell),
		fmt.Sprintf("History: %d entries, %s", len(cf.History), strings.Join(empty, " ")),
		fmt.Sprintf("Layers: %d", len(cf.RootFS.DiffIDs)),
	}
	return lines
}

// diffConfigs returns the lines that differ, as "docker:" / "kiln:" pairs;
// without history, the history and layer count are not compared.
func diffConfigs(docker, kiln *v1.ConfigFile, history bool) []string {
	d, k := configLines(docker), configLines(kiln)
	var out []string
	for i := range d {
		if !history && (strings.HasPrefix(d[i], "History:") || strings.HasPrefix(d[i], "Layers:")) {
			continue
		}
		if d[i] != k[i] {
			out = append(out, "  docker: "+d[i], "  kiln:   "+k[i])
		}
	}
	return out
}
