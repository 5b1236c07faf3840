package dockerfile

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

func plan(t *testing.T, src string, opts PlanOptions) (*Plan, error) {
	t.Helper()
	f, err := Parse("Dockerfile", []byte(src))
	if err != nil {
		return nil, err
	}
	if opts.TargetPlatform.OS == "" {
		opts.TargetPlatform = amd64
		opts.BuildPlatform = amd64
	}
	return f.Plan(opts)
}

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		src  string
		want string
	}{
		{"FROM scratch\nFORM x\n", "Dockerfile:2: unknown instruction: FORM (did you mean FROM?)"},
		{"FROM scratch\nCOPY\n", "Dockerfile:2: COPY requires at least two arguments"},
		{"# comment\n\nENV A=b\nFROM scratch\n", "Dockerfile:3: ENV before the first FROM"},
		{"", "Dockerfile: file with no instructions"},
		{"ARG A=1\n", "Dockerfile: no FROM instruction"},
		{"FROM scratch\nCOPY --nope=1 a b\n", "Dockerfile:2: "},
		{"FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage"},
		{"FROM scratch\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"},
	}
	for _, c := range cases {
		_, err := Parse("Dockerfile", []byte(c.src))
		if err == nil {
			t.Errorf("%q: no error", c.src)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q does not contain %q", c.src, err, c.want)
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Errorf("%q: error is %T, not *Error", c.src, err)
		}
	}
}

func TestPlanStagesAndTarget(t *testing.T) {
	src := `ARG BASE=busybox
ARG TAG
FROM ${BASE}:${TAG:-latest} AS base
FROM scratch AS unused
COPY --from=base /bin/sh /sh
FROM base AS build
COPY --from=0 /etc/passwd /p
FROM scratch
ARG SRC=build
COPY --from=$SRC /p /p
`
	p, err := plan(t, src, PlanOptions{BuildArgs: map[string]string{"TAG": "1.36"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Stages[0].Base; got != "busybox:1.36" {
		t.Errorf("base = %q", got)
	}
	var order []int
	for _, s := range p.Order {
		order = append(order, s.Index)
	}
	if len(order) != 3 || order[0] != 0 || order[1] != 2 || order[2] != 3 {
		t.Errorf("order = %v, want [0 2 3] (stage 1 is not needed)", order)
	}
	if p.Stages[2].BaseStage != p.Stages[0] {
		t.Errorf("stage 2's base is not stage 0")
	}

	p, err = plan(t, src, PlanOptions{Target: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Order) != 2 || p.Target.Name != "unused" {
		t.Errorf("target unused: order %d stages, target %q", len(p.Order), p.Target.Name)
	}
	if _, err := plan(t, src, PlanOptions{Target: "nope"}); err == nil || !strings.Contains(err.Error(), `target stage "nope" not found (stages: base, build, unused)`) {
		t.Errorf("unknown target: %v", err)
	}
}

func TestPlanPlatformArgsAndUnused(t *testing.T) {
	src := "FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH\nFROM scratch-$TARGETARCH\n"
	f, err := Parse("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	arm := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	p, err := f.Plan(PlanOptions{TargetPlatform: arm, BuildPlatform: amd64, BuildArgs: map[string]string{"NOPE": "1", "HTTP_PROXY": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Stages[0].Platform != "linux/amd64" {
		t.Errorf("platform = %q", p.Stages[0].Platform)
	}
	if p.Stages[1].Base != "scratch-arm64" {
		t.Errorf("base = %q", p.Stages[1].Base)
	}
	if len(p.UnusedBuildArgs) != 1 || p.UnusedBuildArgs[0] != "NOPE" {
		t.Errorf("unused = %v", p.UnusedBuildArgs)
	}
}

func TestPlanErrors(t *testing.T) {
	cases := map[string]string{
		"FROM a AS x\nFROM b AS x\n":        `Dockerfile:2: duplicate stage name "x"`,
		"FROM scratch\nCOPY --from=3 a b\n": "Dockerfile:2: COPY --from=3: there is no earlier stage with index 3",
		"ARG X\nFROM $X\n":                  "Dockerfile:2: FROM \"$X\": the base name expands to an empty string",
		"FROM ${X:?needed}\n":               "Dockerfile:1: FROM ${X:?needed}: ",
	}
	for src, want := range cases {
		_, err := plan(t, src, PlanOptions{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}

func TestTriggers(t *testing.T) {
	cmds, err := ParseTriggers("Dockerfile", []string{"COPY a /b", "ENV X=1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 2 || !strings.EqualFold(cmds[0].Name(), "copy") || !strings.EqualFold(cmds[1].Name(), "env") {
		t.Errorf("triggers = %v", cmds)
	}
}

func TestMatcher(t *testing.T) {
	m, err := NewMatcher(".dockerignore", []string{"*.log", "build", "!build/keep", "**/secret*"})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"a.log": true, "dir/a.log": false, "build": true, "build/x": true, "build/keep": false,
		"x/y/secret.txt": true, "src/main.go": false,
	} {
		got, err := m.Excluded(p)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Excluded(%q) = %v, want %v", p, got, want)
		}
	}
	if !m.MayIncludeBelow("build") {
		t.Errorf("build has an exception below it")
	}
}

// FuzzPlan feeds arbitrary Dockerfiles through parsing and planning: they
// must give a plan or an error, never a panic.
func FuzzPlan(f *testing.F) {
	seeds := []string{
		"FROM scratch\nCOPY a b\n",
		"ARG X=1\nFROM busybox:${X} AS a\nFROM a\nCOPY --from=a / /\n",
		"FROM scratch\nCOPY <<EOF /x\nhello\nEOF\n",
		"# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\nENV A=b `\n  C=d\n",
		"FROM scratch\nONBUILD COPY . /app\nHEALTHCHECK --interval=5s CMD true\n",
		"FROM --platform=$BUILDPLATFORM a\nRUN --mount=type=bind,from=a,target=/x true\n",
		"FROM ${A:-b}${C:+d}\nARG E=${F:?x}\n",
	}
	for _, s := range seeds {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, src, target string) {
		df, err := Parse("Dockerfile", []byte(src))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		p, err := df.Plan(PlanOptions{Target: target, TargetPlatform: amd64, BuildPlatform: amd64,
			BuildArgs: map[string]string{"A": "x"}})
		if err != nil {
			return
		}
		if p.Target == nil || len(p.Order) == 0 || p.Order[len(p.Order)-1] != p.Target {
			t.Fatalf("plan without its target last: %+v", p)
		}
	})
}
