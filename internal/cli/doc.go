// Package cli holds kiln's subcommands, one file each, with docker- and
// podman-compatible flags and output. A command parses its flags into typed
// options once, at the flag boundary (--isolation is a sandbox.Mode, given
// to the build as build.Detect, and --progress a progress.Mode, both
// parsed when the flag is set by typedFlag; --network is a
// sandbox.Network; --output and save --format are one
// vocabulary, export.Type, whose values are export.Exporters; a --platform
// is a v1.Platform from pkg/platform; --cache-from and --cache-to are
// cache.Registry repositories), makes one call into the pkg packages and
// prints the result: registry work goes through the command's
// registry.Client (pulling into the store is its Pull, which stored images
// a push sends where its PushTargets, what a copy copies where its
// CopyTargets, pushing them its PushStored, a local name resolved
// ResolveStored), archives are package imagearchive's (load
// reads with Read or ReadStream), attestations build.Attest's, a retry loop is registry.Retry, an atomic file
// atomicfile.WriteFile, an image name shown as docker does
// registry.FamiliarString. runBuild (build.go) reads as the others do:
// parseBuild, build.Build, deliver.
package cli
