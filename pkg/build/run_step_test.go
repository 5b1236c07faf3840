package build

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/dockerfile"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// runStepNotKeyed are the fields of a step (and of its mounts) that are
// not in its key, each with why. A field that is neither keyed nor here
// fails TestRunStepKey: a new RUN option is keyed unless it says why not.
var runStepNotKeyed = map[string]string{
	"runStep.below":     "the layers below: keyed by Chain",
	"runStep.script":    "the #! heredoc: keyed by Heredocs and Args",
	"runStep.proxyEnv":  "proxy build args are not keyed, as in BuildKit",
	"runStep.createdBy": "history text, made of keyed fields",
	"runStep.label":     "where the step is, for logs",
	"runStep.loc":       "where the step is, for errors",
	"runMount.fromRef":  "the stage or image bound: keyed by From, its chain",
}

// sampleRunStep is a step with every keyed field set (each pointer and
// slice non-empty), so that changing any one of them is seen.
func sampleRunStep() *runStep {
	env, mode, uid, gid := "TOKEN", uint64(0o440), uint64(1), uint64(2)
	ts := unixTime(time.Unix(1700000000, 0))
	return &runStep{
		Platform: stepPlatform{OS: "linux", Architecture: "amd64", Variant: "v2"},
		Chain:    "c0ffee", Args: []string{"/bin/sh", "-c", "make"},
		Heredocs: []heredoc{{Name: "EOT", Data: "echo hi\n", Chomp: true}},
		Env:      []string{"PATH=/bin", "A=1"}, User: "app", Cwd: "/src", Network: "none",
		Mounts: []runMount{{Type: "bind", Target: "/t", Source: "ctx", ReadOnly: true, ID: "id", Env: &env,
			Mode: &mode, UID: &uid, GID: &gid, Required: true, From: "f00d", Content: "sha256:abc"}},
		layerSpec: layerSpec{Compression: archive.Gzip, Format: FormatOCI, Timestamp: &ts}, OneID: true, Security: "x",
		Extras: &sandbox.Extras{Hosts: []string{"10.0.0.1 db"}, Ulimits: []sandbox.Ulimit{{Name: "nofile", Resource: 7, Soft: 1024, Hard: 2048}}, ShmSize: 1 << 20},
	}
}

// keyedLeaves calls fn with every keyed value of v reachable through
// exported fields, slice elements and pointers (a unixTime is a leaf),
// and checks every unexported field is in runStepNotKeyed.
func keyedLeaves(t *testing.T, v reflect.Value, where string, fn func(where string, v reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		fn(where, v) // set to nil
		if v.Type() == reflect.TypeOf((*unixTime)(nil)) {
			fn(where+"*", v.Elem()) // a second later
			return
		}
		keyedLeaves(t, v.Elem(), where, fn)
	case reflect.Slice:
		fn(where, v) // one more element
		for i := 0; i < v.Len(); i++ {
			keyedLeaves(t, v.Index(i), fmt.Sprintf("%s[%d]", where, i), fn)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name := v.Type().Name() + "." + f.Name
			if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") != "-" {
				// Embedded: its fields are the key's (encoding/json).
				keyedLeaves(t, v.Field(i), where, fn)
				continue
			}
			if !f.IsExported() || f.Tag.Get("json") == "-" {
				if runStepNotKeyed[name] == "" {
					t.Errorf("%s is not in the step's key and runStepNotKeyed does not say why: key it (an exported field) or give the reason", name)
				}
				continue
			}
			keyedLeaves(t, v.Field(i), where+"."+f.Name, fn)
		}
	default:
		fn(where, v)
	}
}

// change changes v (a leaf, pointer or slice) to another value.
func change(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Pointer:
		v.Set(reflect.Zero(v.Type()))
	case reflect.Struct:
		t := time.Time(v.Interface().(unixTime))
		v.Set(reflect.ValueOf(unixTime(t.Add(time.Second))))
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	default:
		panic("change: " + v.Type().String())
	}
}

// keyer is a step value with a key.
type keyer interface{ Key() (string, error) }

// checkEveryFieldKeyed changes each keyed value of the step sample makes
// (a pointer to a struct), one at a time, and fails when the key stays the
// same; it fails too for a field neither keyed nor in runStepNotKeyed. It
// returns how many values it changed.
func checkEveryFieldKeyed[T keyer](t *testing.T, sample func() T) int {
	t.Helper()
	base, err := sample().Key()
	if err != nil {
		t.Fatal(err)
	}
	root := func(x T) reflect.Value { return reflect.ValueOf(x).Elem() }
	name := root(sample()).Type().Name()
	var paths []string
	keyedLeaves(t, root(sample()), name, func(where string, _ reflect.Value) {
		paths = append(paths, where)
	})
	for i, p := range paths {
		x := sample()
		n := 0
		keyedLeaves(t, root(x), name, func(where string, v reflect.Value) {
			if n == i {
				change(v)
			}
			n++
		})
		k, err := x.Key()
		if err != nil {
			t.Fatal(err)
		}
		if k == base {
			t.Errorf("changing %s leaves the key unchanged", p)
		}
	}
	return len(paths)
}

// TestRunStepKey: changing any field of a RUN step that its execution
// reads changes its key, so that no option can give a stale cache hit.
func TestRunStepKey(t *testing.T) {
	if n := checkEveryFieldKeyed(t, sampleRunStep); n < 30 {
		t.Errorf("only %d keyed values found", n)
	}
	// --timestamp 0 is a timestamp (every mtime 0), unlike none.
	st := sampleRunStep()
	zero := unixTime(time.Unix(0, 0))
	st.Timestamp = &zero
	k0, _ := st.Key()
	st.Timestamp = nil
	if kNil, _ := st.Key(); k0 == kNil {
		t.Errorf("--timestamp 0 and no timestamp give the same key")
	}
}

// TestCopyKey: the same for a COPY or ADD layer's key, and its keys are
// the ones kiln wrote before.
func TestCopyKey(t *testing.T) {
	sample := func() *copyInputs {
		ts := unixTime(time.Unix(1700000000, 0))
		return &copyInputs{Content: "abc", layerSpec: layerSpec{Compression: archive.Gzip, Format: FormatOCI, Timestamp: &ts}}
	}
	if n := checkEveryFieldKeyed(t, sample); n != 5 {
		t.Errorf("%d keyed values found, want 5 (content, compression, format, timestamp and no timestamp)", n)
	}
	for _, tc := range []struct {
		in   copyInputs
		want string
	}{
		{*sample(), "fe31ed23c74c443f2835621ea3aab46951709d079ba9db5cac3c0760b9a74fdf"},
		{copyInputs{Content: "def", layerSpec: layerSpec{Compression: archive.Zstd, Format: FormatDocker}}, "8c82512629e05fc5dc00dd8f4009700e44d9985aec4b92ce519f87694c38188f"},
	} {
		if got, err := tc.in.Key(); err != nil || got != tc.want {
			t.Errorf("key %s (%v), want %s as before", got, err, tc.want)
		}
	}
}

// TestRunStepKeyUnchanged: the keys of steps are the ones kiln wrote
// before steps were values (runInputs), so that existing caches hit.
func TestRunStepKeyUnchanged(t *testing.T) {
	env, mode, uid, gid := "TOKEN", uint64(0o440), uint64(1), uint64(2)
	ts := unixTime(time.Unix(1700000000, 0))
	st := &runStep{
		Platform: stepPlatform{OS: "linux", Architecture: "amd64"}, Chain: "c0ffee",
		Args: []string{"/bin/sh", "-c", "make"}, Heredocs: []heredoc{{Name: "EOT", Data: "echo hi\n", Chomp: true}},
		Env: []string{"PATH=/bin", "A=1"}, User: "app", Cwd: "/src", Network: "none",
		Mounts: []runMount{{Type: "bind", Target: "/ctx", Source: "ctx", ReadOnly: true, Content: "sha256:abc"},
			{Type: "cache", Target: "/root/.cache", ID: "go", Mode: &mode, UID: &uid, GID: &gid},
			{Type: "secret", Target: "/run/secrets/tok", ID: "tok", Env: &env, Required: true},
			{Type: "bind", Target: "/from", Source: "/out", From: "f00d", fromRef: "builder"}},
		layerSpec: layerSpec{Compression: archive.Gzip, Format: FormatOCI, Timestamp: &ts}, OneID: true,
		below: []v1.Layer{nil}, proxyEnv: []string{"HTTP_PROXY=x"}, createdBy: "RUN make", label: "2/2",
	}
	other := &runStep{Platform: stepPlatform{OS: "linux", Architecture: "arm64", Variant: "v8"}, Chain: "c",
		Args: []string{"true"}, Env: []string{}, Network: "default", layerSpec: layerSpec{Compression: archive.Zstd, Format: FormatDocker}}
	extras := &runStep{Platform: stepPlatform{OS: "linux", Architecture: "amd64"}, Chain: "c", Args: []string{"true"},
		Env: []string{}, Network: "default", layerSpec: layerSpec{Compression: archive.Gzip, Format: FormatOCI},
		Extras: &sandbox.Extras{Hosts: []string{"10.0.0.1 db"}, Ulimits: []sandbox.Ulimit{{Name: "nofile", Resource: 7, Soft: 1024, Hard: 2048}}, ShmSize: 1 << 20}}
	for _, tc := range []struct {
		st   *runStep
		want string
	}{
		{st, "7f62ada32858594107634901ddb17956b8f6222570de21274cc31d1d112c5005"},
		{other, "5f4838e47964fa858a9ffd55aa31d884d1357c8d01ccb2d2adb5ab69c740d1ec"},
		{extras, "e2abc32a8525991270cf5940ea23d10fcbbc7ee1081d19e4d14719ac55cf903d"},
	} {
		if got, err := tc.st.Key(); err != nil || got != tc.want {
			t.Errorf("key %s (%v), want %s as before", got, err, tc.want)
		}
	}
}

// TestRunFlagsKeyed parses RUN lines that differ in one flag or build
// option each and checks their keys differ (and that flags meaning the
// default keep the default's key).
func TestRunFlagsKeyed(t *testing.T) {
	parse := func(line string, opts Options) *runStep {
		t.Helper()
		cmds, err := dockerfile.ParseTriggers("Dockerfile", []string{line})
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		c := cmds[0].(*instructions.RunCommand)
		// The mounts are read when the command is expanded (dispatch).
		if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		s := &stageState{
			b: &builder{opts: opts}, run: &stageRun{stage: &dockerfile.Stage{}},
			cfg: &v1.ConfigFile{}, platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		}
		st, err := s.parseRun(c, nil)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return st
	}
	key := func(st *runStep) string {
		k, err := st.Key()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ts := time.Unix(1, 0)
	cases := []struct {
		line string
		opts Options
		what string
	}{
		{"RUN make", Options{}, ""},
		{"RUN make all", Options{}, ""},
		{"RUN [\"make\"]", Options{}, ""},
		{"RUN --network=host make", Options{}, ""},
		{"RUN --network=none make", Options{}, ""},
		{"RUN make", Options{Compression: archive.Zstd}, "--compression zstd"},
		{"RUN make", Options{Format: FormatDocker}, "--format docker"},
		{"RUN make", Options{Timestamp: &ts}, "--timestamp 1"},
		{"RUN make", Options{RunExtras: sandbox.Extras{Hosts: []string{"10.0.0.1 db"}}}, "--add-host db:10.0.0.1"},
		{"RUN make", Options{RunExtras: sandbox.Extras{Ulimits: []sandbox.Ulimit{{Name: "nofile", Resource: 7, Soft: 10, Hard: 10}}}}, "--ulimit nofile=10"},
		{"RUN make", Options{RunExtras: sandbox.Extras{ShmSize: 1 << 20}}, "--shm-size 1m"},
		{"RUN --mount=type=tmpfs,target=/t make", Options{}, ""},
		{"RUN --mount=type=tmpfs,target=/u make", Options{}, ""},
		{"RUN --mount=type=cache,target=/t make", Options{}, ""},
		{"RUN --mount=type=cache,target=/t,id=x make", Options{}, ""},
		{"RUN --mount=type=cache,target=/t,ro make", Options{}, ""},
		{"RUN --mount=type=cache,target=/t,mode=0700 make", Options{}, ""},
		{"RUN --mount=type=cache,target=/t,uid=1 make", Options{}, ""},
		{"RUN --mount=type=cache,target=/t,gid=1 make", Options{}, ""},
		{"RUN --mount=type=bind,target=/t make", Options{}, ""},
		{"RUN --mount=type=bind,target=/t,source=x make", Options{}, ""},
		{"RUN --mount=type=secret,id=s make", Options{}, ""},
		{"RUN --mount=type=secret,id=s,required make", Options{}, ""},
		{"RUN --mount=type=secret,id=s,env=S make", Options{}, ""},
		{"RUN --mount=type=ssh make", Options{}, ""},
		{"RUN --mount=type=ssh,id=other make", Options{}, ""},
		{"RUN <<EOT\nmake\nEOT", Options{}, ""},
		{"RUN <<EOT\n#!/bin/sh\nmake\nEOT", Options{}, ""},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		what := fmt.Sprintf("%q %s", tc.line, tc.what)
		k := key(parse(tc.line, tc.opts))
		if prev, dup := seen[k]; dup {
			t.Errorf("%s has the key of %s", what, prev)
		}
		seen[k] = what
	}
	// Saying the default is the default; docker build --network is every
	// step's --network.
	for _, same := range []struct {
		a, b string
		opts Options
	}{
		{"RUN make", "RUN --security=sandbox make", Options{}},
		{"RUN make", "RUN --network=default make", Options{}},
		{"RUN --network=host make", "RUN make", Options{Network: "host"}},
	} {
		if a, b := key(parse(same.a, Options{})), key(parse(same.b, same.opts)); a != b {
			t.Errorf("%q and %q (%+v): different keys", same.a, same.b, same.opts.Network)
		}
	}
	// Proxy build args are not keyed, but reach the step.
	st := parse("RUN make", Options{BuildArgs: map[string]string{"HTTP_PROXY": "http://p"}})
	if key(st) != key(parse("RUN make", Options{})) || !strings.Contains(strings.Join(st.proxyEnv, " "), "HTTP_PROXY=http://p") {
		t.Errorf("proxy build arg: key changed or not given to the step (%v)", st.proxyEnv)
	}
}

// TestRunUnsupportedFlags: a RUN flag kiln cannot honour is an error that
// names it, never ignored.
func TestRunUnsupportedFlags(t *testing.T) {
	for line, want := range map[string]string{
		"RUN --security=insecure make": "--security=insecure is not supported",
		"RUN --device=/dev/fuse make":  "--device=/dev/fuse is not supported",
	} {
		f, err := dockerfile.Parse("Dockerfile", []byte("FROM scratch\n"+line+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		c := f.Stages[0].Commands[0].(*instructions.RunCommand)
		if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		s := &stageState{b: &builder{}, file: f, run: &stageRun{stage: &dockerfile.Stage{}}, cfg: &v1.ConfigFile{}}
		_, err = s.parseRun(c, c.Location())
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Dockerfile:2") {
			t.Errorf("%s: error %v, want one with %q at Dockerfile:2", line, err, want)
		}
	}
}

// TestRunStepExecutes: what the sandbox is asked to run is the step's
// fields (the ones its key is made of), plus the proxy variables.
func TestRunStepExecutes(t *testing.T) {
	ext := sandbox.Extras{Hosts: []string{"10.0.0.1 db"}, ShmSize: 1 << 20}
	cmds, err := dockerfile.ParseTriggers("Dockerfile", []string{"RUN --network=none make all"})
	if err != nil {
		t.Fatal(err)
	}
	c := cmds[0].(*instructions.RunCommand)
	if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
		t.Fatal(err)
	}
	cfg := &v1.ConfigFile{Config: v1.Config{User: "app", WorkingDir: "/src", Env: []string{"A=1"}, Shell: []string{"/bin/bash", "-c"}}}
	s := &stageState{
		b:   &builder{opts: Options{RunExtras: ext, BuildArgs: map[string]string{"https_proxy": "http://p"}}},
		run: &stageRun{stage: &dockerfile.Stage{}}, cfg: cfg, platform: v1.Platform{OS: "linux", Architecture: "amd64"},
	}
	st, err := s.parseRun(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	step, release, err := s.sandboxStep(context.Background(), &runEnv{}, st, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	release()
	got := fmt.Sprintf("%q %q %q %q %q %+v", step.Args, step.Env, step.User, step.Cwd, step.Network, step.Extras)
	want := fmt.Sprintf("%q %q %q %q %q %+v", []string{"/bin/bash", "-c", "make all"}, []string{"A=1", "HTTPS_PROXY=http://p", "https_proxy=http://p"},
		runUser("app"), "/src", "none", ext)
	if got != want {
		t.Errorf("sandbox step\n%s\nwant\n%s", got, want)
	}
}
