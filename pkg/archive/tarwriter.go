package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// TarOptions controls the normalisation done by TarWriter.
type TarOptions struct {
	// Timestamp, when set, replaces every entry's ModTime (SOURCE_DATE_EPOCH
	// or --timestamp), truncated to whole seconds.
	Timestamp *time.Time
}

// TarWriter writes a deterministic tar stream: the same headers and content
// always give the same bytes. It wraps archive/tar and normalises every
// header it is given (see WriteHeader).
type TarWriter struct {
	tw   *tar.Writer
	opts TarOptions
	hdr  tar.Header // reused: archive/tar copies the header it is given
}

// NewTarWriter returns a TarWriter writing to w.
func NewTarWriter(w io.Writer, opts TarOptions) *TarWriter {
	return &TarWriter{tw: tar.NewWriter(w), opts: opts}
}

// WriteHeader writes a normalised copy of h; h itself is not modified.
//
// The name is cleaned and made relative (no leading "/" or "./"), and
// directories get a trailing "/". Empty names and names with ".."
// components are refused. The format is PAX (long names, large ids and
// xattrs as "SCHILY.xattr.*" PAXRecords work); access and change times are
// dropped, user and group names cleared, ModTime truncated to whole seconds
// (or replaced by TarOptions.Timestamp), mode bits reduced to permissions
// plus setuid/setgid/sticky, and the Linkname of a hardlink cleaned like a
// name. Only regular files carry a size.
func (t *TarWriter) WriteHeader(h *tar.Header) error {
	if h == nil {
		return errors.New("tar header: nil")
	}
	n := &t.hdr
	if err := normaliseHeader(h, t.opts, n); err != nil {
		return err
	}
	if err := t.tw.WriteHeader(n); err != nil {
		return fmt.Errorf("tar entry %q: %w", n.Name, err)
	}
	return nil
}

// Write writes content of the current entry.
func (t *TarWriter) Write(p []byte) (int, error) {
	return t.tw.Write(p)
}

// Close writes the tar trailer. It does not close the underlying writer.
func (t *TarWriter) Close() error {
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("tar trailer: %w", err)
	}
	return nil
}

// cleanWriteName cleans an entry name for writing: relative, no "./"
// prefix, no ".." component, not empty.
func cleanWriteName(name string) (string, error) {
	trimmed := strings.TrimLeft(name, "/")
	for rest := trimmed; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		if c == ".." {
			return "", fmt.Errorf("tar entry %q: name has a \"..\" component", name)
		}
	}
	clean := path.Clean(trimmed)
	if clean == "." || clean == "" {
		return "", fmt.Errorf("tar entry %q: empty name", name)
	}
	return clean, nil
}

// epoch is the ModTime written for headers whose ModTime is the zero time.
var epoch = time.Unix(0, 0).UTC()

// normaliseHeader writes the normalised form of h into n.
func normaliseHeader(h *tar.Header, opts TarOptions, n *tar.Header) error {
	name, err := cleanWriteName(h.Name)
	if err != nil {
		return err
	}
	typ := h.Typeflag
	//lint:ignore SA1019 old tars still carry it; normalise it away
	if typ == tar.TypeRegA {
		typ = tar.TypeReg
		if strings.HasSuffix(h.Name, "/") {
			typ = tar.TypeDir
		}
	}
	if typ == tar.TypeGNUSparse {
		typ = tar.TypeReg
	}
	*n = tar.Header{
		Typeflag: typ,
		Name:     name,
		Linkname: h.Linkname,
		Mode:     h.Mode & 0o7777,
		Uid:      h.Uid,
		Gid:      h.Gid,
		Format:   tar.FormatPAX,
	}
	switch typ {
	case tar.TypeReg:
		n.Size = h.Size
	case tar.TypeDir:
		n.Name += "/"
	case tar.TypeLink:
		ln, err := cleanWriteName(h.Linkname)
		if err != nil {
			return fmt.Errorf("tar entry %q: hardlink target: %w", name, err)
		}
		n.Linkname = ln
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("tar entry %q: symlink without target", name)
		}
	case tar.TypeChar, tar.TypeBlock:
		n.Devmajor, n.Devminor = h.Devmajor, h.Devminor
	case tar.TypeFifo:
	default:
		return fmt.Errorf("tar entry %q: unsupported type %q", name, string(typ))
	}
	if typ != tar.TypeLink && typ != tar.TypeSymlink {
		n.Linkname = ""
	}
	switch {
	case opts.Timestamp != nil:
		n.ModTime = opts.Timestamp.Truncate(time.Second)
	case h.ModTime.IsZero():
		n.ModTime = epoch
	default:
		n.ModTime = h.ModTime.Truncate(time.Second)
	}
	if len(h.PAXRecords) > 0 {
		n.PAXRecords = make(map[string]string, len(h.PAXRecords))
		for k, v := range h.PAXRecords {
			if keepPAXRecord(k) {
				n.PAXRecords[k] = v
			}
		}
	}
	return nil
}

// keepPAXRecord reports whether a PAX record of an input header is carried
// over: extended attributes and other vendor records are; records that
// archive/tar derives from header fields (path, times, ids, sizes, sparse
// maps) are not.
func keepPAXRecord(k string) bool {
	switch k {
	case "path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime", "charset", "comment", "hdrcharset":
		return false
	}
	return !strings.HasPrefix(k, "GNU.sparse.")
}
