// Package cli holds kiln's subcommands, one file each, with docker- and
// podman-compatible flags and output. A command parses its flags into typed
// options once, at the flag boundary (--isolation is a sandbox.Mode, an
// --output a list of export.Exporter, a --platform a v1.Platform from
// pkg/platform), makes one call into the pkg packages and prints the
// result: pulling a layer with retries is registry.Download, a retry loop
// registry.Retry, an atomic file atomicfile.WriteFile, an image name shown
// as docker does registry.FamiliarString.
//
// Still here and due to move (issue 9): the registry backend of the step
// cache (cache.go, for pkg/cache), push's orchestration (push.go, for
// pkg/registry) and the long runBuild (build.go).
package cli
