package cli

import (
	"encoding/json"
	"fmt"
	"text/template"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/registry"
)

// inspectImage is docker's `image inspect` shape, for what kiln knows.
type inspectImage struct {
	//lint:ignore ST1003 docker's field name: --format templates say {{.Id}}
	Id           string          `json:"Id"` // docker's field name, for --format {{.Id}}
	RepoTags     []string        `json:"RepoTags"`
	RepoDigests  []string        `json:"RepoDigests"`
	Created      string          `json:"Created"`
	Author       string          `json:"Author"`
	Config       v1.Config       `json:"Config"`
	Architecture string          `json:"Architecture"`
	Variant      string          `json:"Variant,omitempty"`
	Os           string          `json:"Os"`
	Size         int64           `json:"Size"`
	RootFS       inspectRootFS   `json:"RootFS"`
	Digest       string          `json:"Digest"`
	MediaType    string          `json:"MediaType"`
	History      []v1.History    `json:"History"`
	Manifests    []v1.Descriptor `json:"Manifests,omitempty"`
}

type inspectRootFS struct {
	Type   string   `json:"Type"`
	Layers []string `json:"Layers"`
}

func newInspectCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect IMAGE [IMAGE...]",
		Short: "Show the configuration of local images as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			var tmpl *template.Template
			if format != "" {
				if tmpl, err = template.New("format").Funcs(template.FuncMap{
					"json": func(v any) string { b, _ := json.Marshal(v); return string(b) },
				}).Parse(format); err != nil {
					return fmt.Errorf("--format: %w", err)
				}
			}
			var out []inspectImage
			for _, a := range args {
				d, _, err := resolveLocal(st, g, a)
				if err != nil {
					return err
				}
				ii := inspectImage{Digest: d.Digest.String(), MediaType: string(d.MediaType), RepoTags: []string{}, RepoDigests: []string{}}
				refs, err := refsOf(st, d.Digest)
				if err != nil {
					return err
				}
				for _, r := range refs {
					ii.RepoTags = append(ii.RepoTags, displayRepo(r))
					repo, _ := registry.Familiar(r)
					ii.RepoDigests = append(ii.RepoDigests, repo+"@"+d.Digest.String())
				}
				if d.MediaType.IsIndex() {
					idx, err := st.Index(d.Digest)
					if err != nil {
						return err
					}
					m, err := idx.IndexManifest()
					if err != nil {
						return err
					}
					ii.Id = d.Digest.String()
					ii.Manifests = m.Manifests
					out = append(out, ii)
					continue
				}
				img, err := st.Image(d.Digest)
				if err != nil {
					return err
				}
				cfg, err := img.ConfigFile()
				if err != nil {
					return err
				}
				id, _ := img.ConfigName()
				ii.Id = id.String()
				ii.Created = cfg.Created.UTC().Format("2006-01-02T15:04:05.999999999Z")
				ii.Author = cfg.Author
				ii.Config = cfg.Config
				ii.Architecture, ii.Variant, ii.Os = cfg.Architecture, cfg.Variant, cfg.OS
				ii.History = cfg.History
				ii.RootFS = inspectRootFS{Type: "layers", Layers: []string{}}
				for _, l := range cfg.RootFS.DiffIDs {
					ii.RootFS.Layers = append(ii.RootFS.Layers, l.String())
				}
				if m, err := img.Manifest(); err == nil {
					for _, l := range m.Layers {
						ii.Size += l.Size
					}
				}
				out = append(out, ii)
			}
			if tmpl != nil {
				for _, ii := range out {
					if err := tmpl.Execute(g.stdout, ii); err != nil {
						return fmt.Errorf("--format: %w", err)
					}
					fmt.Fprintln(g.stdout)
				}
				return nil
			}
			b, err := json.MarshalIndent(out, "", "    ")
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, string(b))
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Go template for each image (e.g. {{.Id}}, {{json .Config}})")
	return cmd
}
