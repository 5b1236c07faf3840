package archive

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func aheadData() []byte {
	data := make([]byte, 3<<20+123)
	for i := range data {
		data[i] = byte(i*31/7 + i>>12)
	}
	return data
}

// ReadAhead delivers exactly what its reader gives, in order, however
// the reads are cut, and the reader's error after the bytes before it.
func TestReadAhead(t *testing.T) {
	t.Parallel()
	data := aheadData()
	for _, tc := range []struct {
		name         string
		r            func() io.Reader
		chunk, count int
	}{
		{"one byte reads", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:100000])) }, 4096, 3},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }, 64 << 10, 4},
		{"large chunks", func() io.Reader { return bytes.NewReader(data) }, 1 << 20, 2},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }, 7777, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := data
			if tc.name == "one byte reads" {
				want = data[:100000]
			}
			a := ReadAhead(tc.r(), tc.chunk, tc.count)
			defer a.Stop()
			if err := iotest.TestReader(a, want); err != nil {
				t.Fatal(err)
			}
		})
	}
	boom := errors.New("boom")
	a := ReadAhead(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), 1<<20, 2)
	got, err := io.ReadAll(a)
	if !errors.Is(err, boom) || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes, then %v; want all, then boom", len(got), len(data), err)
	}
	if n, err := a.Read(make([]byte, 10)); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("after the error: %d, %v", n, err)
	}
	a.Stop()
}

// Stop ends the goroutine whether it waits for room (its reader is slow)
// or for its reader (once that read returns), and reading after it fails.
func TestReadAheadStop(t *testing.T) {
	t.Parallel()
	// Waiting for room: the chunks are full and nobody reads them.
	a := ReadAhead(bytes.NewReader(aheadData()), 1024, 2)
	if _, err := a.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	a.Stop() // again: a no-op
	if _, err := io.ReadAll(a); err == nil {
		t.Error("reading after Stop did not fail")
	}
	// Blocked in its reader: closing the pipe makes the read return.
	pr, pw := io.Pipe()
	a = ReadAhead(pr, 1024, 2)
	pw.Write([]byte("abc")) // taken by the goroutine, which then reads again
	pr.CloseWithError(errors.New("closed"))
	a.Stop()
}

// NewReaderAhead decompresses what NewReader does; a truncated or
// corrupted stream fails as it does, and Close mid-stream returns.
func TestNewReaderAhead(t *testing.T) {
	t.Parallel()
	data := aheadData()
	for _, c := range []Compression{Gzip, Zstd, None} {
		var buf bytes.Buffer
		zw, err := Compress(&buf, c)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
		blob := buf.Bytes()

		rc, err := NewReaderAhead(bytes.NewReader(blob), c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if err := iotest.TestReader(rc, data); err != nil {
			t.Errorf("%s: %v", c, err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("%s: Close: %v", c, err)
		}
		if c == None {
			continue
		}

		rc, err = NewReaderAhead(bytes.NewReader(blob[:len(blob)/2]), c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), "EOF") {
			t.Errorf("%s: a truncated stream: %v", c, err)
		}
		rc.Close()

		bad := bytes.Clone(blob)
		bad[len(bad)-6] ^= 0xff // gzip: the checksum; zstd: the last block
		rc, err = NewReaderAhead(bytes.NewReader(bad), c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err == nil {
			t.Errorf("%s: a corrupted stream was read without an error", c)
		}
		rc.Close()

		rc, err = NewReaderAhead(bytes.NewReader(blob), c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("%s: Close mid-stream: %v", c, err)
		}
	}
}
