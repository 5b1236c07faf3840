// Package store is the local content store: an OCI image layout (blobs by
// digest, refs in index.json) shared safely by concurrent builds through file
// locks and atomic renames. Blobs are verified against their digest before
// they become visible; a killed writer leaves only temporary files that the
// next open removes. Its images, indexes and layers are read lazily from
// its blobs through package oci (which decompresses layers through package
// archive, ahead of the reader). OpenVerifiedLayer reads a layer verified
// against its digest and diff ID on three goroutines (fetching and keeping
// the blob, decompressing, and the caller's), and keeps a fetched blob only
// once both matched. It knows nothing about archive formats: docker and OCI
// archives and OCI layouts for others to read are package imagearchive's,
// which `kiln load` reads from and `kiln save` writes to.
//
// # Layout
//
//	root/oci-layout, root/index.json   a standard OCI image layout
//	root/blobs/sha256/<hex>            immutable, verified blobs
//	root/tmp/kiln-blob-*               blobs being written
//	root/sources/sha256/<hex>[.hints]  where a blob not held can be fetched
//	root/lock                          flock target
//
// Refs are index.json entries annotated with
// org.opencontainers.image.ref.name set to the full reference, one entry per
// ref, so tools that read OCI layouts (skopeo's oci: transport, crane,
// go-containerregistry's layout package) see the store as it is.
//
// # Where it lives
//
// Locate picks the store's directory: --root, else $KILN_ROOT, else the
// first writable of /var/lib/kiln (root), $XDG_DATA_HOME/kiln,
// ~/.local/share/kiln and a 0700 directory of the uid under $TMPDIR, so a
// uid without a passwd entry (HOME=/) still gets a store. When TMPDIR
// itself cannot be written, TempFallback points it at a short-lived
// directory in root/tmp: one writable volume for the store is enough.
//
// # Concurrency and crash safety
//
//   - A blob is written to a temp file in tmp/, hashed as it is written,
//     verified, fsynced and renamed into blobs/; then the directory is
//     fsynced. Readers therefore only ever see complete, verified blobs.
//   - A writer holds an exclusive flock on its temp file. Open and GC remove
//     only temp files they can lock, i.e. those whose writer has died.
//   - index.json is replaced (index.json.tmp, fsync, rename) under an
//     exclusive flock on root/lock, so concurrent Tag/Untag calls from any
//     number of goroutines and processes never lose an update. Readers need
//     no lock.
//   - Tag verifies, under that lock, that the manifest and everything it
//     references are in the store: no ref ever names a partial image.
//   - GC holds root/lock exclusively while it walks the refs and removes
//     unreachable blobs. Commits, and the "already present, skip" decisions
//     of WriteBlob/WriteImage, take root/lock shared for an instant and
//     refresh the blob's mtime; GC spares blobs younger than a grace period
//     (DefaultGCGrace, one hour), so the blobs of an image written but not
//     yet tagged survive. Anything that must outlive the grace period needs a
//     ref.
//   - A source an image depends on (its layer is left in its registry) is
//     synced before the image is written; sources that are hints (where a
//     push found a blob, where a cache entry's layer is) are appended
//     unsynced, and a crash that tears one loses only that hint (source.go).
package store
