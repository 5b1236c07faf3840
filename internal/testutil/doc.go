// Package testutil is kiln's test kit, importable by the tests of any
// package. It uses real parts, not mocks:
//
//   - Registries: StartRegistry runs Debian's docker-registry (the CNCF
//     distribution server) on a free loopback port; StartInProcessRegistry
//     serves go-containerregistry's in-process registry over httptest for
//     fast unit tests. CountingProxy sits in front of either and counts the
//     blob bytes a client downloads.
//   - Base images made without any image builder: BusyboxImage (Debian's
//     busybox-static) and DebianImage (mmdebstrap minbase bookworm, cached on
//     disk), PlatformIndex (a synthetic linux/amd64 + linux/arm64 index), and
//     PushImage / PushIndex to put them in a registry.
//   - Checking images: ImageTree lists an image's merged file tree (layers
//     applied in order, whiteouts honoured), LayerTree one layer's entries,
//     ConfigSummary the config and history fields a Dockerfile controls, and
//     Golden compares such lines with testdata/golden/NAME.txt (rewritten by
//     `go test -update`). CheckSLSAProvenance checks a provenance statement
//     against in-toto v0.1 and SLSA v0.2 (in-toto-golang's types, decoded
//     strictly, and the fields the spec requires).
//   - SharedDocker starts a private docker daemon (Debian's docker.io,
//     dockerd 20.10 with BuildKit, with its own containerd, data root and
//     socket, no bridge, no iptables) once per test process, for the
//     differential tests against BuildKit and for running kiln in
//     containers; its Docker, Build, Run, Save and Load call /usr/bin/docker
//     with DOCKER_HOST and DOCKER_BUILDKIT=1. It needs root.
//   - KilnBinary builds ./cmd/kiln once per test process, for end-to-end
//     tests; call Main from TestMain to remove it (and stop the shared
//     docker daemon) afterwards.
//
// A missing prerequisite program (docker-registry, busybox-static,
// mmdebstrap, skopeo, docker.io; or root, for the docker daemon) fails the test with the Debian package to install and
// the hint to run `sudo .ci/deps`; under `go test -short` the test is
// skipped instead. The programs themselves are in package harness, which
// the benchmark tools use without a *testing.T.
package testutil
