package build_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/registry"
)

// TestRunJobsBoundsConcurrentSteps: independent stages build concurrently,
// but no more than --jobs RUN steps (sandboxes) run at once. Each step
// marks itself in a shared cache directory while it runs and records how
// many marks it saw.
func TestRunJobsBoundsConcurrentSteps(t *testing.T) {
	e, sb := runEnv(t)
	if !sb.Features().Mounts {
		t.Skip("the shared cache mount needs a mode with mounts")
	}
	const stages, jobs = 6, 2
	var df strings.Builder
	for i := 0; i < stages; i++ {
		fmt.Fprintf(&df, "FROM {{REG}}/library/busybox AS s%d\nRUN --mount=type=cache,target=/c,id=jobs touch /c/s%d && sleep 1 && ls /c | wc -l > /seen && rm /c/s%d\n", i, i, i)
	}
	df.WriteString("FROM {{REG}}/library/busybox\n")
	for i := 0; i < stages; i++ {
		fmt.Fprintf(&df, "COPY --from=s%d /seen /seen%d\n", i, i)
	}
	img := e.mustBuild(t, df.String(), nil, withSandbox(sb, nil), func(o *build.Options) { o.Registry = registry.New(registry.Options{Jobs: jobs}) })
	for i := 0; i < stages; i++ {
		l := treeLine(t, img, "/seen"+strconv.Itoa(i))
		for n := jobs + 1; n <= stages; n++ {
			if strings.Contains(l, sha256Hex(strconv.Itoa(n)+"\n")) {
				t.Errorf("stage %d saw %d steps running at once with --jobs %d", i, n, jobs)
			}
		}
	}
}
