// Package archive reads and writes layer tar streams: deterministic output
// (sorted, normalised headers, PAX for long names and xattrs), OCI whiteouts,
// hardlinks, compression with fixed settings (gzip, zstd), digests computed
// while streaming, merged views over a stack of layers, and safe extraction
// of untrusted archives.
//
// Decompression is here for every reader in kiln: Decompress sniffs a
// stream (gzip, bzip2, xz, zstd; build -, ADD, kiln load), NewReader
// decodes a layer whose media type names its compression (CompressionOf),
// NewReaderAhead does so on a goroutine of its own, ahead of a reader that
// has work of its own (ReadAhead is the same for any reader), and Sniff
// names a stream's compression from its first bytes.
//
// Writing: WriteLayer streams entries written to a TarWriter through the
// DiffID digest, Compress and the blob digest into any io.Writer in one
// pass. TarWriter normalises every header (clean relative names, PAX
// format, no atime/ctime/user names, whole-second or fixed mtimes), and the
// compressors use fixed settings, so equal input gives equal digests on any
// machine, whatever its number of CPUs or the sizes of the writes.
//
// Reading: a Tree is the merged view of a stack of layers built from their
// headers alone (BuildTree, Apply): Lookup, Resolve (symlinks followed as
// inside a chroot), Walk, and ReadFiles, which streams only the layers that
// hold wanted files, each once. FindFile looks up one path from the top
// layer down and never opens the layers below the one that decides it.
//
// Indexing: a LayerIndex is a layer's tar headers without content
// (IndexLayer, or Indexer as a tee while something else reads the layer),
// checked against the layer's diff ID and encoded in a compact binary
// form (indexfmt.go; the JSON of format 1 is still read); a Tree built
// from indexes (ApplyIndex) is the one BuildTree makes, so a base image's
// files can be looked up, and read, without reading its layers. An
// IndexStack answers a lookup of one path from the indexes alone, as that
// Tree would, without making the Tree of every entry.
//
// Whiteouts follow the OCI image spec: a ".wh.NAME" entry hides NAME of the
// layers below, ".wh..wh..opq" hides the lower contents of its directory,
// and neither hides entries of its own layer, wherever they sit in the
// stream. Tree, FindFile and Extract agree on this.
//
// Squashing: Squash writes the one layer a stack of layers makes (podman's
// --squash over a base that stays, with whiteouts and opaque markers for
// what the stack hid of it; --squash-all as a whole filesystem), hard
// links kept where their target is still the file they were made against.
//
// Extracting: Extract applies one layer onto a directory (Linux only),
// treating the layer as hostile: nothing is written outside the directory,
// no symlink is followed, and what an unprivileged caller cannot do (device
// nodes, privileged xattrs) is skipped and reported rather than fatal.
// With ExtractOptions.Upper it writes the directory as an overlay's upper
// directory over the layers below (whiteouts, opaque xattrs, copy-up from a
// read-only view of them) instead of removing from them: the overlay then
// shows the tree that applying the layer would give. Regular files new to
// directories the extraction made are created, written and given their
// metadata on several goroutines (ExtractOptions.Workers; file creation is
// kernel time that spreads over CPUs), everything else in the layer's
// order; the result is the one extracting in order gives. SyncFS is the
// one sync a layer gets before it is published: never a fsync per file.
package archive
