// Package archive reads and writes layer tar streams: deterministic output
// (sorted, normalised headers, PAX for long names and xattrs), OCI whiteouts,
// hardlinks, compression with fixed settings (gzip, zstd), digests computed
// while streaming, merged views over a stack of layers, and safe extraction
// of untrusted archives.
package archive
