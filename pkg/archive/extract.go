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
