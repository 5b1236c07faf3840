// Package atomicfile owns kiln's atomic file writes: a file is written
// under a temporary name in its own directory, fsynced, renamed over its
// final name, and the directory is fsynced, so a reader (or the next
// process after a crash or a kill) sees the old content or the new, never
// a part, and a failure leaves nothing behind.
//
// Every file kiln writes for a user or for its store goes through here:
// --iidfile, --digestfile, --metadata-file and kaniko's digest files,
// save and --output archives, auth files, the store's small files and the
// ptrace owner table. The store's blobs have their own commit (they are
// verified against their digest and renamed under the store's commit lock),
// which ends with Commit. Records whose loss after a crash costs only work
// done again (path answers, context digests) skip the two fsyncs: Replace
// renames them into place without; the store's source hints are appended. WriteFile writes its
// bytes at once, through no buffer; Write buffers a stream in 64 KiB.
package atomicfile
