package attest

import (
	"fmt"
	"strconv"
	"strings"
)

// Request is which attestations a build attaches (buildx's --sbom,
// --provenance and --attest).
type Request struct {
	SBOM          bool
	Provenance    bool
	ProvenanceMax bool
}

// Any reports whether anything is to be attached.
func (r Request) Any() bool { return r.SBOM || r.Provenance }

// ParseRequest reads buildx's flags: --sbom=true|false|generator=…,
// --provenance=true|false|mode=min|max and --attest type=sbom|provenance
// [,mode=…][,disabled=true]. What kiln cannot honour is an error.
func ParseRequest(sbom, provenance string, attests []string) (Request, error) {
	var r Request
	if sbom != "" {
		if err := r.set("--sbom="+sbom, "sbom", sbom); err != nil {
			return r, err
		}
	}
	if provenance != "" {
		if err := r.set("--provenance="+provenance, "provenance", provenance); err != nil {
			return r, err
		}
	}
	for _, a := range attests {
		typ, rest := "", []string{}
		for _, f := range strings.Split(a, ",") {
			if v, ok := strings.CutPrefix(f, "type="); ok {
				typ = v
			} else {
				rest = append(rest, f)
			}
		}
		if typ != "sbom" && typ != "provenance" {
			return r, fmt.Errorf("--attest %s: want type=sbom or type=provenance", a)
		}
		v := strings.Join(rest, ",")
		if v == "" {
			v = "true"
		}
		if err := r.set("--attest "+a, typ, v); err != nil {
			return r, err
		}
	}
	return r, nil
}

// set applies one value (true, false or KEY=VALUE fields) of kind.
func (r *Request) set(flag, kind, v string) error {
	on, max := true, false
	if b, err := strconv.ParseBool(v); err == nil {
		on = b
	} else {
		for _, f := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return fmt.Errorf("%s: %q is not true, false or KEY=VALUE", flag, f)
			}
			switch {
			case k == "disabled":
				b, err := strconv.ParseBool(val)
				if err != nil {
					return fmt.Errorf("%s: disabled=%s: want true or false", flag, val)
				}
				on = !b
			case k == "mode" && kind == "provenance":
				if val != "min" && val != "max" {
					return fmt.Errorf("%s: mode=%s: want min or max", flag, val)
				}
				max = val == "max"
			case k == "generator" && kind == "sbom":
				return fmt.Errorf("%s: kiln makes the SBOM itself (from the image's package databases, without running a scanner image); leave out generator=", flag)
			default:
				return fmt.Errorf("%s: unknown key %q", flag, k)
			}
		}
	}
	if kind == "sbom" {
		r.SBOM = on
	} else {
		r.Provenance, r.ProvenanceMax = on, on && max
	}
	return nil
}
