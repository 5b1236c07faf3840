package registry

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	plat "github.com/kiln-build/kiln/pkg/platform"
)

const dgst = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParseReference(t *testing.T) {
	isolateEnv(t)
	cases := []struct {
		in       string
		want     string // String()
		registry string
		repo     string
		id       string
		scheme   string // "https" or "http" (insecure)
	}{
		{"busybox", "index.docker.io/library/busybox:latest", "index.docker.io", "library/busybox", "latest", "https"},
		{"busybox:1.36", "index.docker.io/library/busybox:1.36", "index.docker.io", "library/busybox", "1.36", "https"},
		{"docker.io/busybox", "index.docker.io/library/busybox:latest", "index.docker.io", "library/busybox", "latest", "https"},
		{"docker.io/library/busybox", "index.docker.io/library/busybox:latest", "index.docker.io", "library/busybox", "latest", "https"},
		{"index.docker.io/library/debian:bookworm", "index.docker.io/library/debian:bookworm", "index.docker.io", "library/debian", "bookworm", "https"},
		{"myorg/app", "index.docker.io/myorg/app:latest", "index.docker.io", "myorg/app", "latest", "https"},
		{"ghcr.io/org/team/app:v1.2.3", "ghcr.io/org/team/app:v1.2.3", "ghcr.io", "org/team/app", "v1.2.3", "https"},
		{"reg.example.com:5000/app:Tag_1", "reg.example.com:5000/app:Tag_1", "reg.example.com:5000", "app", "Tag_1", "https"},
		{"localhost:5000/app", "localhost:5000/app:latest", "localhost:5000", "app", "latest", "http"},
		{"localhost/app:1", "localhost/app:1", "localhost", "app", "1", "http"},
		{"127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000", "a/b", "c", "http"},
		{"[::1]:5000/a:c", "[::1]:5000/a:c", "[::1]:5000", "a", "c", "http"},
		{"insecure.example.com/a:1", "insecure.example.com/a:1", "insecure.example.com", "a", "1", "http"},
		{"10.1.2.3:443/a:1", "10.1.2.3:443/a:1", "10.1.2.3:443", "a", "1", "http"},
		{"busybox@" + dgst, "index.docker.io/library/busybox@" + dgst, "index.docker.io", "library/busybox", dgst, "https"},
		{"busybox:1.36@" + dgst, "index.docker.io/library/busybox@" + dgst, "index.docker.io", "library/busybox", dgst, "https"},
		{"reg.example.com:5000/a/b:t@" + dgst, "reg.example.com:5000/a/b@" + dgst, "reg.example.com:5000", "a/b", dgst, "https"},
		{"a.b-c/d__e/f-g:h", "a.b-c/d__e/f-g:h", "a.b-c", "d__e/f-g", "h", "https"},
	}
	o := Options{Insecure: []string{"insecure.example.com", "10.0.0.0/8"}}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			ref, err := New(o).ParseReference(c.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", c.in, err)
			}
			if ref.String() != c.want {
				t.Errorf("String() = %q, want %q", ref.String(), c.want)
			}
			if got := ref.Context().RegistryStr(); got != c.registry {
				t.Errorf("registry = %q, want %q", got, c.registry)
			}
			if got := ref.Context().RepositoryStr(); got != c.repo {
				t.Errorf("repository = %q, want %q", got, c.repo)
			}
			if got := ref.Identifier(); got != c.id {
				t.Errorf("identifier = %q, want %q", got, c.id)
			}
			if got := ref.Context().Scheme(); got != c.scheme {
				t.Errorf("scheme = %q, want %q", got, c.scheme)
			}
			if strings.HasPrefix(c.id, "sha256:") {
				if _, ok := ref.(name.Digest); !ok {
					t.Errorf("%T is not a name.Digest", ref)
				}
			}
		})
	}
}

func TestParseReferenceTLSVerify(t *testing.T) {
	isolateEnv(t)
	f, tr := false, true
	ref, err := New(Options{TLSVerify: &f}).ParseReference("reg.example.com/app")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Context().Scheme() != "http" {
		t.Errorf("TLSVerify=false: scheme %q, want http allowed", ref.Context().Scheme())
	}
	ref, err = New(Options{TLSVerify: &tr, Insecure: []string{"insecure.example.com"}}).ParseReference("insecure.example.com/app")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Context().Scheme() != "https" {
		t.Errorf("TLSVerify=true: scheme %q, want https only", ref.Context().Scheme())
	}
	// A host entry matches every port; host:port only that port.
	o := Options{Insecure: []string{"a.example.com", "b.example.com:5000", "http://c.example.com/"}}
	for in, want := range map[string]string{
		"a.example.com:1234/x": "http", "b.example.com:5000/x": "http", "b.example.com:5001/x": "https",
		"c.example.com/x": "http", "d.example.com/x": "https",
	} {
		if got := mustRef(t, in, o).Context().Scheme(); got != want {
			t.Errorf("%s: scheme %q, want %q", in, got, want)
		}
	}
}

func TestParseReferenceErrors(t *testing.T) {
	cases := map[string]string{
		"":                                   "empty",
		"Busybox":                            "lowercase",
		"reg.example.com/MyApp:1":            "lowercase",
		"busybox:":                           "empty tag",
		"https://reg.example.com/app":        "URL scheme",
		"busy box":                           "white space",
		"a//b":                               "",
		"app@sha256:abc":                     "digest",
		"app@md5:" + strings.Repeat("0", 32): "digest",
		"app:tag@" + dgst + "@" + dgst:       "'@'",
		"-app":                               "",
		"app:" + strings.Repeat("t", 129):    "",
		"a/b_/c":                             "",
	}
	for in, why := range cases {
		_, err := ParseReference(in)
		if err == nil {
			t.Errorf("ParseReference(%q) succeeded, want error", in)
			continue
		}
		prefix := "invalid reference \"" + in + "\": "
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("ParseReference(%q) error %q does not start with %q", in, err, prefix)
		}
		if !strings.Contains(err.Error(), why) {
			t.Errorf("ParseReference(%q) error %q does not say %q", in, err, why)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	cases := map[string]v1.Platform{
		"linux/amd64":    {OS: "linux", Architecture: "amd64"},
		"linux/arm64/v8": {OS: "linux", Architecture: "arm64", Variant: "v8"},
		"linux/arm64":    {OS: "linux", Architecture: "arm64"},
		"linux/arm/v7":   {OS: "linux", Architecture: "arm", Variant: "v7"},
		"Linux/AMD64":    {OS: "linux", Architecture: "amd64"},
		"linux/aarch64":  {OS: "linux", Architecture: "arm64"},
		"linux/x86_64":   {OS: "linux", Architecture: "amd64"},
		"linux/armhf":    {OS: "linux", Architecture: "arm", Variant: "v7"},
		"arm64":          {OS: "linux", Architecture: "arm64"},
		"windows/amd64":  {OS: "windows", Architecture: "amd64"},
		"linux/s390x":    {OS: "linux", Architecture: "s390x"},
	}
	for in, want := range cases {
		got, err := plat.Parse(in)
		if err != nil {
			t.Errorf("plat.Parse(%q): %v", in, err)
			continue
		}
		if got.OS != want.OS || got.Architecture != want.Architecture || got.Variant != want.Variant {
			t.Errorf("plat.Parse(%q) = %+v, want %+v", in, *got, want)
		}
	}
	for _, in := range []string{"", "linux/", "/amd64", "linux/arm/v7/x", "plan10/amd64", "linux/am d64"} {
		_, err := plat.Parse(in)
		if err == nil {
			t.Errorf("plat.Parse(%q) succeeded, want error", in)
			continue
		}
		if !strings.Contains(err.Error(), "\""+in+"\"") {
			t.Errorf("plat.Parse(%q) error %q does not name the input", in, err)
		}
	}
}

func TestChoosePlatform(t *testing.T) {
	d := func(hex string, p v1.Platform) v1.Descriptor {
		return v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(hex, 64)}, Platform: &p}
	}
	im := &v1.IndexManifest{Manifests: []v1.Descriptor{
		d("1", v1.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}),
		d("2", v1.Platform{OS: "linux", Architecture: "amd64"}),
		d("3", v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}),
		d("4", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}),
		d("5", v1.Platform{OS: "linux", Architecture: "arm"}),
		d("6", v1.Platform{OS: "unknown", Architecture: "unknown"}),
	}}
	cases := []struct {
		want v1.Platform
		hex  string // "" for no match
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, "2"},
		{v1.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}, "1"},
		{v1.Platform{OS: "linux", Architecture: "amd64", Variant: "v2"}, ""},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, "3"},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "3"},
		{v1.Platform{OS: "linux", Architecture: "aarch64"}, "3"},
		{v1.Platform{OS: "linux", Architecture: "arm"}, "5"},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "5"},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, "4"},
		{v1.Platform{OS: "linux", Architecture: "s390x"}, ""},
		{v1.Platform{OS: "windows", Architecture: "amd64"}, ""},
	}
	for _, c := range cases {
		got, err := choosePlatform(im, c.want)
		if c.hex == "" {
			if err == nil {
				t.Errorf("%s: chose %s, want no match", plat.Format(c.want), got.Digest)
			} else if !strings.Contains(err.Error(), "linux/amd64, linux/amd64/v3, linux/arm/v6, linux/arm64/v8, linux/arm") &&
				!strings.Contains(err.Error(), "available: linux/amd64") {
				t.Errorf("%s: error %q does not list the platforms", plat.Format(c.want), err)
			} else if strings.Contains(err.Error(), "unknown") {
				t.Errorf("%s: error %q lists the attestation manifest", plat.Format(c.want), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", plat.Format(c.want), err)
			continue
		}
		if got.Digest.Hex[:1] != c.hex {
			t.Errorf("%s: chose manifest %s, want %s", plat.Format(c.want), got.Digest.Hex[:1], c.hex)
		}
	}
}

func TestFamiliar(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string][2]string{
		"index.docker.io/library/busybox:1.36":                 {"busybox", "1.36"},
		"docker.io/team/app:2":                                 {"team/app", "2"},
		"localhost:5000/app:3":                                 {"localhost:5000/app", "3"},
		"localhost:5000/app":                                   {"localhost:5000/app", "<none>"},
		"localhost:5000/app@sha256:" + strings.Repeat("a", 64): {"localhost:5000/app", "sha256:" + strings.Repeat("a", 64)},
	} {
		if repo, tag := Familiar(ref); repo != want[0] || tag != want[1] {
			t.Errorf("Familiar(%s) = %s, %s; want %s, %s", ref, repo, tag, want[0], want[1])
		}
	}
	if got := FamiliarString("index.docker.io/library/busybox:1.36"); got != "busybox:1.36" {
		t.Errorf("FamiliarString = %s", got)
	}
	for _, c := range []struct {
		pattern, ref string
		want         bool
	}{
		{"localhost:5000/app:3", "localhost:5000/app:3", true},
		{"localhost:5000/app", "localhost:5000/app:3", true},
		{"localhost:5000/app:4", "localhost:5000/app:3", false},
		{"busybox", "index.docker.io/library/busybox:1.36", true},
		{"docker.io/library/busybox:1.36", "index.docker.io/library/busybox:1.36", true},
		{"busy*", "index.docker.io/library/busybox:1.36", true},
		{"other", "index.docker.io/library/busybox:1.36", false},
	} {
		if got := MatchFamiliar(c.pattern, c.ref); got != c.want {
			t.Errorf("MatchFamiliar(%s, %s) = %v", c.pattern, c.ref, got)
		}
	}
}
