package build

import (
	"sort"
	"strings"
)

// proxyVars are the proxy settings BuildKit passes to RUN from --build-arg
// without an ARG line (the names match in any case), each set in upper and
// lower case.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"}

// proxyEnv is what RUN steps get from proxy --build-args: like a secret
// variable it is in neither the image's config, its history nor the step's
// cache key (a build behind another proxy reuses the steps). When a name is
// given in several cases the last in sorted order wins (BuildKit's rule).
func (b *builder) proxyEnv() []string {
	keys := make([]string, 0, len(b.opts.BuildArgs))
	for k := range b.opts.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := map[string]string{}
	for _, k := range keys {
		for _, p := range proxyVars {
			if strings.EqualFold(k, p) {
				vals[p] = b.opts.BuildArgs[k]
			}
		}
	}
	var env []string
	for _, p := range proxyVars {
		if v := vals[p]; v != "" {
			env = append(env, p+"="+v, strings.ToLower(p)+"="+v)
		}
	}
	return env
}

// withEnv sets each K=V of extra in env, replacing an entry of the same
// name (as an OCI runtime spec's env is made: the last value wins).
func withEnv(env, extra []string) []string {
	out := append([]string(nil), env...)
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, e := range out {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				out[i], replaced = kv, true
				break
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}
