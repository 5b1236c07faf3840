package archive

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
)

// CopyLayer writes the tar stream r as a layer blob to dst, as WriteLayer
// writes the same entries, but without decoding and encoding every entry
// again: r must be what a TarWriter without a Timestamp wrote (the
// sandbox's diff of an overlay upper directory is), and its bytes go
// through the diff ID's hash, the compressor and the blob's hash as they
// are. Each header is read, checked to be in the TarWriter's normal form
// (an entry that is not is an error naming it: the stream is not what it
// was said to be) and, when seen is set, given to seen.
func CopyLayer(dst io.Writer, c Compression, r io.Reader, seen func(*tar.Header)) (LayerInfo, error) {
	p, err := newLayerPipe(dst, c)
	if err != nil {
		return LayerInfo{}, err
	}
	// The tar reader reads 512-byte blocks: both sides batched.
	tee := bufio.NewWriterSize(p.diff, 64<<10)
	in := io.TeeReader(bufio.NewReaderSize(r, 256<<10), tee)
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return p.fail(err)
		}
		if err := checkNormal(h); err != nil {
			return p.fail(err)
		}
		if seen != nil {
			seen(h)
		}
	}
	// Whatever follows the trailer is part of the stream (TarWriter
	// writes nothing there).
	if _, err := io.Copy(io.Discard, in); err != nil {
		return p.fail(err)
	}
	if err := tee.Flush(); err != nil {
		return p.fail(err)
	}
	return p.finish()
}

// derivedPAX are the PAX records archive/tar writes from a header's
// fields when they do not fit the ustar header: a reader sets the fields
// from them, and writing the header again writes them again.
var derivedPAX = map[string]bool{"path": true, "linkpath": true, "size": true, "uid": true, "gid": true, "mtime": true}

// checkNormal reports an error when writing h through a TarWriter (no
// Timestamp) would not give the entry it was read from.
func checkNormal(h *tar.Header) error {
	var n tar.Header
	if err := normaliseHeader(h, TarOptions{}, &n); err != nil {
		return err
	}
	same := n.Typeflag == h.Typeflag && n.Name == h.Name && n.Linkname == h.Linkname &&
		n.Mode == h.Mode && n.Uid == h.Uid && n.Gid == h.Gid && n.Size == h.Size &&
		n.ModTime.Equal(h.ModTime) && n.Devmajor == h.Devmajor && n.Devminor == h.Devminor &&
		h.Uname == "" && h.Gname == "" && h.AccessTime.IsZero() && h.ChangeTime.IsZero() &&
		h.Format&(tar.FormatUSTAR|tar.FormatPAX) != 0 && h.Format&tar.FormatGNU == 0
	for k := range h.PAXRecords {
		if !keepPAXRecord(k) && !derivedPAX[k] {
			same = false
		}
	}
	if !same {
		return fmt.Errorf("tar entry %q is not in the normal form of a layer", h.Name)
	}
	return nil
}
