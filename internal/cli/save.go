package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/store"
)

func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func newSaveCommand(g *globals) *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE [IMAGE...]",
		Short: "Write local images to a docker or OCI archive",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "docker-archive" && format != "oci-archive" {
				return fmt.Errorf("--format %q: want docker-archive or oci-archive", format)
			}
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			var items []store.Item
			for _, a := range args {
				d, ref, err := resolveLocal(st, g, a)
				if err != nil {
					return err
				}
				if format == "docker-archive" {
					ref = displayRepo(ref) // docker's short names
				}
				it := store.Item{Ref: ref}
				if isIndex(d.MediaType) {
					if it.Index, err = st.Index(d.Digest); err != nil {
						return err
					}
				} else if it.Image, err = st.Image(d.Digest); err != nil {
					return err
				}
				items = append(items, it)
			}
			write := func(w io.Writer) error {
				if format == "oci-archive" {
					return store.WriteOCIArchive(w, items)
				}
				return store.WriteDockerArchive(w, items)
			}
			if output == "" || output == "-" {
				if f, ok := g.stdout.(*os.File); ok && isTerminal(f) {
					return fmt.Errorf("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
				}
				bw := bufio.NewWriterSize(g.stdout, 1<<20)
				if err := write(bw); err != nil {
					return err
				}
				return bw.Flush()
			}
			return writeFileVia(output, write)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().StringVar(&format, "format", "docker-archive", "docker-archive or oci-archive")
	return cmd
}

// writeFileVia writes a file through a temporary name in its directory, so
// that a failure leaves nothing behind.
func writeFileVia(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
