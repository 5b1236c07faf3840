package export

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Type is an output type: the TYPE of `kiln build --output type=TYPE`,
// and of `kiln save --format TYPE-archive` for the types that write
// archives. It is parsed once, at the flag boundary (Parse, ParseFormat).
type Type string

// The output types. Those that write files register a kind (one file
// each: archives.go, rootfs.go); image and registry name the store's copy
// and a push, which are not exports.
const (
	TypeOCI      Type = "oci"
	TypeDocker   Type = "docker"
	TypeTar      Type = "tar"
	TypeLocal    Type = "local"
	TypeImage    Type = "image"
	TypeRegistry Type = "registry"
)

// kind is how the exporters of one Type are made and which --output keys
// the type takes besides type= and dest=.
type kind struct {
	// new makes the exporter writing to dest (Stdout: to stdout);
	// archive asks for one tar file whatever dest's name (save).
	new func(dest string, stdout io.Writer, archive bool) (Exporter, error)
	// loads: without dest= the output is the copy in kiln's store, which
	// every build writes (buildx's "load" of type=docker): no exporter.
	loads bool
	// names: name= gives the names the written images carry.
	names bool
	// layers: the layers are written as they are, so compression= applies.
	layers bool
	// artifacts: oci-artifact= applies (the images' attestations are
	// written as OCI 1.1 referrers).
	artifacts bool
	// archive: `kiln save --format TYPE-archive` writes this type.
	archive bool
}

// kinds are the registered file output types.
var kinds = map[Type]kind{}

// register adds a file output type; called from the init of the file
// that implements it.
func register(t Type, k kind) {
	if _, dup := kinds[t]; dup {
		panic("export: type " + string(t) + " registered twice")
	}
	kinds[t] = k
}

// typeNames lists every --output type, sorted, as error messages name them.
func typeNames() []string {
	s := []string{string(TypeImage), string(TypeRegistry)}
	for t := range kinds {
		s = append(s, string(t))
	}
	sort.Strings(s)
	return s
}

// archiveSuffix turns a Type into its save --format name.
const archiveSuffix = "-archive"

// ParseFormat parses `kiln save --format`: TYPE-archive for a type that
// writes archives (docker-archive, oci-archive).
func ParseFormat(s string) (Type, error) {
	if t, ok := strings.CutSuffix(s, archiveSuffix); ok && kinds[Type(t)].archive {
		return Type(t), nil
	}
	var want []string
	for t, k := range kinds {
		if k.archive {
			want = append(want, string(t)+archiveSuffix)
		}
	}
	sort.Strings(want)
	return "", fmt.Errorf("--format %q: want %s", s, orList(want))
}

// NewArchive is the exporter of `kiln save --format`: the archive of
// type t (from ParseFormat) written to dest (Stdout: to stdout), always
// one tar file.
func NewArchive(t Type, dest string, stdout io.Writer) (Exporter, error) {
	k, ok := kinds[t]
	if !ok || !k.archive {
		return nil, fmt.Errorf("type %s writes no archive", t)
	}
	return k.new(dest, stdout, true)
}

// orList joins "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
