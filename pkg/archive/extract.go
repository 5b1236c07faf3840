package archive

import (
	"archive/tar"
	"strings"
)

// ExtractOptions controls Extract.
type ExtractOptions struct {
	// Chown applies the uid and gid of each entry (without following
	// symlinks). When false, everything extracted belongs to the caller.
	Chown bool
	// OnSkip, when set, is told about what could not be applied and was
	// skipped: device nodes when mknod is not permitted, extended attributes
	// that cannot be set (as non-root, or on a filesystem without them),
	// entries of unsupported types.
	OnSkip func(name, reason string)
	// Upper, when set, writes the layer as the upper directory of an
	// overlay mount over the layers below instead of through one (the
	// kernel's overlay costs twice the system time per file created):
	// deletions become overlay whiteouts (0:0 character devices) and
	// opaque directories (the overlay's opaque xattr) instead of removals,
	// and what the layer takes from the layers below (the owner and mode
	// of a parent directory it does not list, the target of a hardlink)
	// is copied up from Upper.Lower, as the overlay would. The merged view
	// is the one extracting through the overlay gives.
	Upper *UpperOptions
	// Workers is how many goroutines create and write regular files
	// besides the one reading the tar (Extract waits for them): 0 picks
	// one per CPU (at most 4), a negative number none (every entry in
	// order on the caller's goroutine).
	Workers int
	// WriteBack starts each file's writeback as soon as it is written
	// (sync_file_range, without waiting), so that the SyncFS that ends a
	// layer finds little left to write: the disk writes while the
	// extraction goes on instead of after it.
	WriteBack bool
}

// UpperOptions describes the overlay an upper directory is extracted for.
type UpperOptions struct {
	// Lower is a read-only view of the layers below, merged (an overlay
	// mount of them, or the one directory); "" when there are none.
	Lower string
	// UserXattr: the overlay is mounted with userxattr (inside a user
	// namespace), so its xattrs are "user.overlay.*", not "trusted.".
	UserXattr bool
}

func (u *UpperOptions) opaqueXattr() string {
	if u.UserXattr {
		return "user.overlay.opaque"
	}
	return "trusted.overlay.opaque"
}

func (o ExtractOptions) skip(name, reason string) {
	if o.OnSkip != nil {
		o.OnSkip(name, reason)
	}
}

// xattrPAXPrefix is the PAX record prefix of extended attributes.
const xattrPAXPrefix = "SCHILY.xattr."

// isSparse reports whether a header describes a sparse file.
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
