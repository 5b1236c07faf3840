// Package store is the local content store: an OCI image layout (blobs by
// digest, refs in index.json) shared safely by concurrent builds through file
// locks and atomic renames. Blobs are verified against their digest before
// they become visible; a killed writer leaves only temporary files that the
// next open removes. It also writes images out as OCI layouts, OCI archives
// and docker archives.
package store
