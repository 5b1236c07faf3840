package cache

import (
	"strings"
	"testing"
)

func TestParseCacheSpec(t *testing.T) {
	for _, c := range []struct {
		in      string
		repo    string
		ignore  bool
		wantErr string
	}{
		{in: "reg.example:5000/team/cache", repo: "reg.example:5000/team/cache", ignore: true},
		{in: "type=registry,ref=reg.example/cache", repo: "reg.example/cache"},
		{in: "type=registry,ref=reg.example/cache,mode=max", repo: "reg.example/cache"},
		{in: "type=registry,ref=reg.example/cache,mode=min,ignore-error=true", repo: "reg.example/cache", ignore: true},
		{in: "ref=reg.example/cache,type=registry,image-manifest=true,oci-mediatypes=true", repo: "reg.example/cache"},
		{in: `"type=registry","ref=reg.example/cache"`, repo: "reg.example/cache"},
		{in: "type=local,src=/tmp/cache", wantErr: `cache type "local" is not supported`},
		{in: "type=gha", wantErr: `cache type "gha" is not supported`},
		{in: "type=inline", wantErr: `cache type "inline" is not supported`},
		{in: "type=registry", wantErr: "missing ref=REPO"},
		{in: "ref=reg.example/cache", wantErr: "missing type=registry"},
		{in: "type=registry,ref=r.example/c,mode=all", wantErr: "mode must be min or max"},
		{in: "type=registry,ref=r.example/c,compression=zstd", wantErr: `unknown key "compression"`},
		{in: "type=registry,ref=r.example/c,ignore-error=maybe", wantErr: "ignore-error: want true or false"},
		{in: "type=registry,ref=r.example/c,oci-mediatypes=false", wantErr: "not supported"},
		{in: "type=registry,ref=r.example/c,junk", wantErr: `"junk" is not KEY=VALUE`},
		{in: "reg.example/cache,mode=max", wantErr: "want a repository or type=registry,ref=REPO"},
	} {
		repo, ignore, err := parseSpec("--cache-from", c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "--cache-from") {
				t.Errorf("%q: error %v, want one naming the flag and containing %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || repo != c.repo || ignore != c.ignore {
			t.Errorf("%q = (%q, %v, %v), want (%q, %v)", c.in, repo, ignore, err, c.repo, c.ignore)
		}
	}
}

// A failed export fails the build only when a --cache-to in buildx's form
// did not say ignore-error=true.
func TestTieredStrict(t *testing.T) {
	lenient, strict := &Registry{ignoreErr: true}, &Registry{}
	for _, c := range []struct {
		to   []Remote
		want bool
	}{{nil, false}, {[]Remote{lenient}, false}, {[]Remote{lenient, strict}, true}} {
		if got := (&Tiered{To: c.to}).Strict(); got != c.want {
			t.Errorf("Strict() with %d remotes = %v, want %v", len(c.to), got, c.want)
		}
	}
}
