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
	// Type is the output type as given (oci, docker, tar, local, image,
	// registry).
	Type string
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
		return Output{Type: "tar", Exporter: Tar{Dest: Stdout, Stdout: stdout}}, nil
	}
	if !strings.Contains(s, "=") {
		if s == "" {
			return Output{}, fmt.Errorf("--output: empty value")
		}
		return Output{Type: "local", Exporter: Local{Dest: s}}, nil
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
			o.Type = v
		case "dest":
			dest, destSet = v, true
		default:
			opts[k] = v
		}
	}
	switch o.Type {
	case "oci", "docker", "tar", "local":
		if err := fileOutput(&o, dest, destSet, stdout); err != nil {
			return o, fmt.Errorf("--output %q: %w", s, err)
		}
	case "image", "registry":
		if destSet {
			return o, fmt.Errorf("--output %q: type=%s takes name=, not dest=", s, o.Type)
		}
		o.Push = o.Type == "registry"
	case "":
		return o, fmt.Errorf("--output %q: missing type= (oci, docker, tar, local, image or registry)", s)
	default:
		return o, fmt.Errorf("--output %q: unknown type %q (kiln writes oci, docker, tar, local, image and registry)", s, o.Type)
	}
	if err := o.options(opts); err != nil {
		return o, fmt.Errorf("--output %q: %w", s, err)
	}
	if (o.Type == "image" || o.Type == "registry") && len(o.Names) == 0 {
		return o, fmt.Errorf("--output %q: type=%s needs name=NAME[:TAG] (or -t)", s, o.Type)
	}
	return o, nil
}

func fileOutput(o *Output, dest string, destSet bool, stdout io.Writer) error {
	if !destSet || dest == "" {
		if o.Type == "docker" {
			return nil // buildx loads it; kiln's store always has it
		}
		return fmt.Errorf("dest= is required for type=%s", o.Type)
	}
	switch o.Type {
	case "oci":
		o.Exporter = OCI{Dest: dest, Stdout: stdout}
	case "docker":
		o.Exporter = Docker{Dest: dest, Stdout: stdout}
	case "tar":
		o.Exporter = Tar{Dest: dest, Stdout: stdout}
	case "local":
		if dest == Stdout {
			return fmt.Errorf("type=local writes a directory: use type=tar,dest=- for stdout")
		}
		o.Exporter = Local{Dest: dest}
	}
	return nil
}

// options applies the keys other than type and dest.
func (o *Output) options(opts map[string]string) error {
	image := o.Type == "image" || o.Type == "registry"
	for k, v := range opts {
		switch {
		case k == "name" && (image || o.Type == "docker" || o.Type == "oci"):
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					o.Names = append(o.Names, n)
				}
			}
		case k == "push" && image:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("push=%s: want true or false", v)
			}
			o.Push = o.Push || b
		case k == "compression" && o.Type != "tar" && o.Type != "local":
			if v != "gzip" && v != "zstd" {
				return fmt.Errorf("compression=%s: kiln writes gzip or zstd", v)
			}
			o.Compression = v
		case k == "oci-artifact" && (image || o.Type == "oci"):
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("oci-artifact=%s: want true or false", v)
			}
			o.OCIArtifact = b
		case k == "oci-mediatypes":
			// kiln's images are OCI unless --format docker; an OCI output
			// is a directory or, for a dest ending in .tar, a tar.
			if b, err := strconv.ParseBool(v); err != nil || (k == "oci-mediatypes" && !b) {
				return fmt.Errorf("%s=%s is not supported (use --format docker for docker media types)", k, v)
			}
		default:
			return fmt.Errorf("unknown key %q for type=%s", k, o.Type)
		}
	}
	return nil
}
