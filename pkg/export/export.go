package export

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/imagearchive"
	"github.com/kiln-build/kiln/pkg/progress"
)

// Exporter writes images somewhere outside the store.
type Exporter interface {
	// Export writes the items (each an image or an index, with an optional
	// reference name).
	Export(ctx context.Context, items []imagearchive.Item) error
	// String describes the destination for logs ("oci output to DIR").
	String() string
}

// Multi exports to every exporter in order, stopping at the first error.
type Multi []Exporter

// Export implements Exporter.
func (m Multi) Export(ctx context.Context, items []imagearchive.Item) error {
	for _, e := range m {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.Export(ctx, items); err != nil {
			return err
		}
	}
	return nil
}

func (m Multi) String() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}

// Stdout is the dest that names standard output ("-").
const Stdout = "-"

// writeDest writes a file through a temporary name in its directory (or
// to w when dest is "-"), so a failure leaves nothing behind.
func writeDest(dest string, stdout io.Writer, write func(io.Writer) error) error {
	if dest == Stdout {
		if stdout == nil {
			return errors.New("no standard output to write to")
		}
		if f, ok := stdout.(*os.File); ok && progress.IsTerminal(f) {
			return errors.New("refusing to write an archive to a terminal: name a file or redirect stdout")
		}
		bw := bufio.NewWriterSize(stdout, 1<<20)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	return atomicfile.Write(dest, 0o644, write)
}

// WriteFile writes path through a temporary name in its directory, so a
// failure leaves nothing behind.
func WriteFile(path string, write func(io.Writer) error) error {
	if err := writeDest(path, nil, write); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// describe names a destination in errors and logs.
func describe(typ, dest string) string {
	if dest == Stdout {
		return typ + " output to stdout"
	}
	return fmt.Sprintf("%s output to %s", typ, dest)
}
