package export

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tonistiigi/go-csvvalue"
)

// Output is one parsed --output value.
type Output struct {
	// Exporter writes to a path or stdout; nil for type=image/registry
	// and for type=docker without dest (the image goes to kiln's store,
	// which every build writes: buildx's "load").
	Exporter Exporter
	// Type is the output type.
	Type Type
	// Stdout: the Exporter writes to standard output.
	Stdout bool
	// Names are image names to tag (type=image/registry name=...).
	Names []string
	// Push asks for Names to be pushed (type=registry, or push=true).
	Push bool
	// Compression is a compression=... request ("" if none).
	Compression string
	// OCIArtifact is buildx's oci-artifact=true: attestation manifests
	// are OCI 1.1 artifacts whose subject is their image.
	OCIArtifact bool
}

// Parse reads one --output value as buildx does: comma-separated
// key=value pairs (CSV-quoted where a value holds a comma), or a bare
// path (the local exporter) or "-" (a tar on stdout). Unknown types, keys
// and values are errors naming them.
func Parse(s string, stdout io.Writer) (Output, error) {
	if s == Stdout {
		return Output{Type: TypeTar, Stdout: true, Exporter: Tar{Dest: Stdout, Stdout: stdout}}, nil
	}
	if !strings.Contains(s, "=") {
		if s == "" {
			return Output{}, fmt.Errorf("--output: empty value")
		}
		return Output{Type: TypeLocal, Exporter: Local{Dest: s}}, nil
	}
	fields, err := csvvalue.Fields(s, nil)
	if err != nil {
		return Output{}, fmt.Errorf("--output %q: %w", s, err)
	}
	var o Output
	var dest string
	destSet := false
	opts := map[string]string{}
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return o, fmt.Errorf("--output %q: %q is not KEY=VALUE", s, kv)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		switch k {
		case "type":
			o.Type = Type(v)
		case "dest":
			dest, destSet = v, true
		default:
			opts[k] = v
		}
	}
	k, file := kinds[o.Type]
	switch {
	case file:
		if err := o.fileOutput(k, dest, destSet, stdout); err != nil {
			return o, fmt.Errorf("--output %q: %w", s, err)
		}
	case o.Type == TypeImage || o.Type == TypeRegistry:
		if destSet {
			return o, fmt.Errorf("--output %q: type=%s takes name=, not dest=", s, o.Type)
		}
		o.Push = o.Type == TypeRegistry
	case o.Type == "":
		return o, fmt.Errorf("--output %q: missing type= (%s)", s, orList(typeNames()))
	default:
		return o, fmt.Errorf("--output %q: unknown type %q (kiln writes %s)", s, o.Type, strings.Join(typeNames(), ", "))
	}
	if err := o.options(k, opts); err != nil {
		return o, fmt.Errorf("--output %q: %w", s, err)
	}
	if (o.Type == TypeImage || o.Type == TypeRegistry) && len(o.Names) == 0 {
		return o, fmt.Errorf("--output %q: type=%s needs name=NAME[:TAG] (or -t)", s, o.Type)
	}
	return o, nil
}

func (o *Output) fileOutput(k kind, dest string, destSet bool, stdout io.Writer) error {
	if !destSet || dest == "" {
		if k.loads {
			return nil // buildx loads it; kiln's store always has it
		}
		return fmt.Errorf("dest= is required for type=%s", o.Type)
	}
	e, err := k.new(dest, stdout, false)
	if err != nil {
		return err
	}
	o.Exporter, o.Stdout = e, dest == Stdout
	return nil
}

// options applies the keys other than type and dest (k: the file type's
// kind, zero for image and registry).
func (o *Output) options(k kind, opts map[string]string) error {
	image := o.Type == TypeImage || o.Type == TypeRegistry
	for key, v := range opts {
		switch {
		case key == "name" && (image || k.names):
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					o.Names = append(o.Names, n)
				}
			}
		case key == "push" && image:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("push=%s: want true or false", v)
			}
			o.Push = o.Push || b
		case key == "compression" && (image || k.layers):
			if v != "gzip" && v != "zstd" {
				return fmt.Errorf("compression=%s: kiln writes gzip or zstd", v)
			}
			o.Compression = v
		case key == "oci-artifact" && (image || k.artifacts):
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("oci-artifact=%s: want true or false", v)
			}
			o.OCIArtifact = b
		case key == "oci-mediatypes":
			// kiln's images are OCI unless --format docker; an OCI output
			// is a directory or, for a dest ending in .tar, a tar.
			if b, err := strconv.ParseBool(v); err != nil || !b {
				return fmt.Errorf("%s=%s is not supported (use --format docker for docker media types)", key, v)
			}
		default:
			return fmt.Errorf("unknown key %q for type=%s", key, o.Type)
		}
	}
	return nil
}
