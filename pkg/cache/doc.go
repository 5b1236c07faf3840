// Package cache is kiln's step cache: the result of a build step (today a
// RUN step: its layer and the entries the layer holds) stored under a key
// that names everything the result depends on, so that a later build with
// the same key reuses the layer instead of running the step.
//
// A key is the sha256 of a canonical JSON encoding of the step's inputs
// (Key); the caller decides what goes in (for RUN: the diff IDs of the
// layers below, the command, environment, user, working directory,
// network, mounts, and the layer format), so that a key is
// content-addressed: the same inputs on any machine give the same key.
//
// An entry is an OCI image manifest: its config is a small JSON document
// (media type ConfigMediaType) with the step's history text and the tar
// headers of the layer, and its one layer is the step's layer. Local keeps
// entries in a kiln store (pkg/store), named by cache refs that the
// store's GC treats as roots, so a cached layer lives as long as its entry.
//
// Layer path indexes (index.go) are kept the same way, under a key made
// from the layer's diff ID, and travel with --cache-to/--cache-from.
//
// Tiered (remote.go) puts the local cache in front of registry
// repositories; Registry (registry.go) is such a repository, parsed from
// --cache-from and --cache-to.
//
// FileSums (sums.go) is the store's table of build-context file digests,
// keyed by path and stat, so that an unchanged file is never read again;
// kiln prune drops the digests of files gone or changed (PruneFileSums),
// prune --all the table.
package cache
