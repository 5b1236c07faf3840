package platform

import (
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestFormatNormalize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   v1.Platform
		want [2]string
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, [2]string{"linux/amd64", "linux/amd64"}},
		{v1.Platform{OS: "linux", Architecture: "amd64", Variant: "v1"}, [2]string{"linux/amd64/v1", "linux/amd64"}},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, [2]string{"linux/arm64/v8", "linux/arm64"}},
		{v1.Platform{OS: "linux", Architecture: "arm"}, [2]string{"linux/arm", "linux/arm/v7"}},
		{v1.Platform{OS: "linux", Architecture: "aarch64"}, [2]string{"linux/aarch64", "linux/arm64"}},
		{v1.Platform{OS: "linux", Architecture: "s390x"}, [2]string{"linux/s390x", "linux/s390x"}},
	} {
		in, want := c.in, c.want
		if got := Format(in); got != want[0] {
			t.Errorf("Format(%+v) = %s, want %s", in, got, want[0])
		}
		if got := Format(Normalize(in)); got != want[1] {
			t.Errorf("Normalize(%+v) = %s, want %s", in, got, want[1])
		}
	}
	if d := Default(); d.OS != runtime.GOOS || d.Architecture != runtime.GOARCH || Format(Normalize(d)) != Format(d) {
		t.Errorf("Default() = %+v on %s/%s", d, runtime.GOOS, runtime.GOARCH)
	}
}

func TestMatchesScore(t *testing.T) {
	t.Parallel()
	p := func(s string) v1.Platform {
		t.Helper()
		pp, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return *pp
	}
	for _, c := range []struct {
		want, have string
		matches    bool
		score      int
	}{
		{"linux/arm64", "linux/arm64/v8", true, 2},
		{"linux/arm64/v8", "linux/arm64", true, 2},
		{"linux/arm/v7", "linux/arm", true, 2},
		{"linux/arm/v6", "linux/arm/v7", false, 0},
		{"linux/amd64", "linux/amd64/v3", true, 1},
		{"linux/amd64/v2", "linux/amd64/v3", false, 0},
		{"linux/amd64", "linux/arm64", false, 0},
		{"linux/amd64", "windows/amd64", false, 0},
	} {
		if got := Matches(p(c.have), p(c.want)); got != c.matches {
			t.Errorf("Matches(%s, %s) = %v", c.have, c.want, got)
		}
		if got := Score(p(c.want), p(c.have)); got != c.score {
			t.Errorf("Score(%s, %s) = %d, want %d", c.want, c.have, got, c.score)
		}
	}
}
