// Package harness holds the building blocks of kiln's test environment that
// do not need a *testing.T: a real registry process (Debian's
// docker-registry, the CNCF distribution server), base images made from
// Debian packages without any image builder (busybox-static, mmdebstrap
// minbase bookworm), a synthetic multi-platform index, pushing, a
// reverse proxy that counts the blob bytes a client fetches, and a private
// docker daemon with its own containerd (StartDockerd, Debian's docker.io).
//
// Tests use these through package testutil, which adds cleanup and turns
// errors into test failures. The benchmark tools under bench/cmd use them
// directly.
//
// A missing prerequisite program is reported as a *MissingError that names
// the Debian package to install; `sudo .ci/deps` installs them all.
package harness
