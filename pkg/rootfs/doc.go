// Package rootfs keeps the unpacked layers RUN steps work on, and turns what
// a RUN step changed back into a layer.
//
// Each layer is unpacked once per machine into the store's rootfs
// directory, keyed by its chain ID (the layer's diff ID and everything
// below it) and by the id mapping it was unpacked under, in overlay
// format: a layer directory is the upper directory of an overlay mount of
// the layers below, so whiteouts are 0/0 character devices and opaque
// directories carry the overlay "opaque" xattr. A RUN step mounts an
// overlay of those directories with a fresh upper directory; afterwards the
// upper directory is converted to an OCI layer (WriteUpperDiff) and itself
// becomes the next layer directory, so a step costs what it changed, not
// what the filesystem holds.
//
// Where no overlay can be mounted, a working copy of the whole tree is
// made and the diff is found by a metadata walk (Snapshot, WriteWalkDiff)
// that compares path, type, mode, owner, size, mtime, ctime, inode and link
// target and never reads unchanged files.
//
// Code that touches layer directories runs where the files' owners are
// visible: inside the build's user namespace when kiln is not root. The
// Store does that through an Unpacker (package sandbox provides one).
// Reverify compares layer directories with their layers' tars through a
// Verifier and removes those that differ (kiln prune --verify).
package rootfs
