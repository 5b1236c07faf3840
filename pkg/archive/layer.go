package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayerInfo describes a layer blob written by WriteLayer.
type LayerInfo struct {
	DiffID      v1.Hash // sha256 of the uncompressed tar
	Digest      v1.Hash // sha256 of the compressed bytes written to dst
	Size        int64   // compressed size
	Compression Compression
}

// WriteLayer writes one layer blob to dst in a single pass: fill writes the
// tar entries, which flow through the uncompressed digest (DiffID), the
// compressor, and the compressed digest and byte count on their way to dst.
// Nothing is read twice and the layer is never held in memory. The tar
// trailer is written after fill returns; fill must not Close tw. On error,
// dst may have received part of a stream and is to be discarded.
func WriteLayer(dst io.Writer, c Compression, opts TarOptions, fill func(tw *TarWriter) error) (LayerInfo, error) {
	if fill == nil {
		return LayerInfo{}, errors.New("write layer: nil fill function")
	}
	p, err := newLayerPipe(dst, c)
	if err != nil {
		return LayerInfo{}, err
	}
	// Tar writes 512-byte headers and padding; batch them for the
	// compressor. Large content writes go straight through.
	tarBuf := bufio.NewWriterSize(p.diff, 64<<10)
	tw := NewTarWriter(tarBuf, opts)
	if err := fill(tw); err != nil {
		return p.fail(err)
	}
	if err := tw.Close(); err != nil {
		return p.fail(err)
	}
	if err := tarBuf.Flush(); err != nil {
		return p.fail(err)
	}
	return p.finish()
}

// layerPipe is the way of a layer's tar stream into a blob: the diff ID's
// hash and the compressor (diff), then the blob's hash and byte count.
type layerPipe struct {
	c      Compression
	out    *hashCounter
	outBuf *bufio.Writer
	zw     io.WriteCloser
	diff   *hashCounter
}

func newLayerPipe(dst io.Writer, c Compression) (*layerPipe, error) {
	p := &layerPipe{c: c, out: &hashCounter{w: dst}}
	if c != None {
		p.out.h = sha256.New()
	}
	// Compressors emit in chunks of varying size; batch them for dst.
	p.outBuf = bufio.NewWriterSize(p.out, 256<<10)
	zw, err := Compress(p.outBuf, c)
	if err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	p.zw = zw
	p.diff = &hashCounter{w: zw, h: sha256.New()}
	return p, nil
}

// fail stops the compressor's goroutines and returns err.
func (p *layerPipe) fail(err error) (LayerInfo, error) {
	_ = p.zw.Close()
	return LayerInfo{}, fmt.Errorf("write layer: %w", err)
}

// finish ends the compressed stream once the whole tar went into diff.
func (p *layerPipe) finish() (LayerInfo, error) {
	if err := p.zw.Close(); err != nil {
		return LayerInfo{}, fmt.Errorf("write layer: finish %s stream: %w", p.c, err)
	}
	if err := p.outBuf.Flush(); err != nil {
		return LayerInfo{}, fmt.Errorf("write layer: %w", err)
	}
	info := LayerInfo{
		DiffID:      hashOf(p.diff.h),
		Size:        p.out.n,
		Compression: p.c,
	}
	info.Digest = info.DiffID
	if p.out.h != nil {
		info.Digest = hashOf(p.out.h)
	}
	return info, nil
}

// hashCounter counts, and hashes if h is set, the bytes written through it.
type hashCounter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hc *hashCounter) Write(p []byte) (int, error) {
	n, err := hc.w.Write(p)
	if hc.h != nil {
		hc.h.Write(p[:n])
	}
	hc.n += int64(n)
	return n, err
}

// hashOf returns h's sum as a v1.Hash.
func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
