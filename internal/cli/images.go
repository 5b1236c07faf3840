package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/registry"

	units "github.com/docker/go-units"
)

type imageRow struct {
	Repository   string
	Tag          string
	ID           string
	Digest       string
	CreatedAt    string
	CreatedSince string
	Size         string
}

func newImagesCommand(g *globals) *cobra.Command {
	var digests, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "images [REPOSITORY[:TAG]]",
		Short: "List images in the local store",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			entries, err := st.List()
			if err != nil {
				return err
			}
			var tmpl *template.Template
			if format != "" {
				if format == "json" {
					format = "{{json .}}"
				}
				if tmpl, err = template.New("format").Funcs(template.FuncMap{
					"json": func(v any) string { b, _ := json.Marshal(v); return string(b) },
				}).Parse(format); err != nil {
					return fmt.Errorf("--format: %w", err)
				}
			}
			var rows []imageRow
			for _, e := range entries {
				repo, tag := registry.Familiar(e.Ref)
				if len(args) == 1 && !registry.MatchFamiliar(args[0], e.Ref) {
					continue
				}
				row := imageRow{Repository: repo, Tag: tag, Digest: e.Descriptor.Digest.String()}
				id, created, size := describeStored(st, e.Descriptor)
				row.ID = id
				if !created.IsZero() {
					row.CreatedAt = created.Format("2006-01-02 15:04:05 -0700 MST")
					row.CreatedSince = since(created)
				}
				row.Size = humanSize(size)
				rows = append(rows, row)
			}
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.ID] {
						seen[r.ID] = true
						fmt.Fprintln(g.stdout, shortID(r.ID))
					}
				}
				return nil
			}
			if tmpl != nil {
				for _, r := range rows {
					if err := tmpl.Execute(g.stdout, r); err != nil {
						return fmt.Errorf("--format: %w", err)
					}
					fmt.Fprintln(g.stdout)
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			if digests {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tCREATED\tSIZE")
			} else {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			for _, r := range rows {
				if digests {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, r.Digest, shortID(r.ID), r.CreatedSince, r.Size)
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, shortID(r.ID), r.CreatedSince, r.Size)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&digests, "digests", false, "show digests")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "show only image IDs")
	cmd.Flags().StringVar(&format, "format", "", "Go template for each image (fields: .Repository .Tag .ID .Digest .CreatedAt .CreatedSince .Size), or json")
	return cmd
}

// describeStored gives an image's ID, creation time and size (compressed
// layers plus config); an index is shown by its own digest.
func describeStored(st interface {
	Image(v1.Hash) (v1.Image, error)
}, d v1.Descriptor) (string, time.Time, int64) {
	if d.MediaType == types.OCIImageIndex || d.MediaType == types.DockerManifestList {
		return d.Digest.String(), time.Time{}, d.Size
	}
	img, err := st.Image(d.Digest)
	if err != nil {
		return d.Digest.String(), time.Time{}, 0
	}
	id, err := img.ConfigName()
	if err != nil {
		return d.Digest.String(), time.Time{}, 0
	}
	var size int64
	if m, err := img.Manifest(); err == nil {
		size = m.Config.Size
		for _, l := range m.Layers {
			size += l.Size
		}
	}
	var created time.Time
	if cfg, err := img.ConfigFile(); err == nil {
		created = cfg.Created.Time
	}
	return id.String(), created, size
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// humanSize and since print sizes and ages as docker images does.
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }

func since(t time.Time) string { return units.HumanDuration(time.Now().UTC().Sub(t)) + " ago" }
