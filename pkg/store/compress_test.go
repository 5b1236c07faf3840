package store

import (
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gzipWriter(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil }

func zstdWriter(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) }
