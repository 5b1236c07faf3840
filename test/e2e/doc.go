// Package e2e holds kiln's end-to-end tests. They build ./cmd/kiln, run it
// as a user would, against Debian's docker-registry and base images made
// from Debian packages (see internal/testutil), and check what it wrote with
// independent tools: skopeo and go-containerregistry.
//
// They run as part of `go test ./...`. A missing prerequisite
// (docker-registry, skopeo, busybox-static, mmdebstrap) fails them with the
// package to install; `sudo .ci/deps` installs everything. `go test -short`
// skips them.
package e2e
