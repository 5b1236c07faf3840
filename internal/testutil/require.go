package testutil

import (
	"testing"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// SkipIfShort skips an end-to-end or otherwise slow test under
// `go test -short`.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
}

// Require stops the test if err is not nil. A *harness.MissingError (a
// prerequisite program is not installed) fails the test with the package to
// install, or skips it under -short; any other error fails it.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if harness.IsMissing(err) && testing.Short() {
		t.Skipf("skipped with -short: %v", err)
	}
	t.Fatal(err)
}

// RequireProgram checks that path is an executable installed by the Debian
// package pkg, as Require does for a missing program.
func RequireProgram(t testing.TB, path, pkg string) {
	t.Helper()
	Require(t, harness.NeedExecutable(path, pkg))
}

// RequireSkopeo checks that /usr/bin/skopeo is installed and returns its
// path.
func RequireSkopeo(t testing.TB) string {
	t.Helper()
	const p = "/usr/bin/skopeo"
	RequireProgram(t, p, "skopeo")
	return p
}
