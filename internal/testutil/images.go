package testutil

import (
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// Each image is made once per test process, under its own lock so that a
// first DebianImage (mmdebstrap) does not hold up the others.
var (
	busyboxMu   sync.Mutex
	busyboxImg  v1.Image
	debianMu    sync.Mutex
	debianImg   v1.Image
	platformMu  sync.Mutex
	platformIdx v1.ImageIndex
)

// BusyboxImage returns a one-layer OCI image made from Debian's
// busybox-static without any image builder: /bin/busybox and a symlink per
// applet (so /bin/sh works), /etc/passwd with root (0), daemon (1), app
// (1000:1000, home /home/app) and nobody (65534), /etc/group with root,
// daemon, staff (50), app (1000) and nogroup, /tmp and /var/tmp mode 1777,
// /root 0700, /home/app owned by 1000:1000. Every entry is dated
// harness.Epoch and owned by root unless said otherwise; the layer is
// deterministic. Config: Env ["PATH=/usr/local/sbin:...:/bin"], Cmd ["sh"],
// the host's architecture. The image is made once per test process.
func BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	busyboxMu.Lock()
	defer busyboxMu.Unlock()
	if busyboxImg == nil {
		img, err := harness.Busybox()
		Require(t, err)
		busyboxImg = img
	}
	return busyboxImg
}

// DebianImage returns a one-layer OCI image of `mmdebstrap --variant=minbase
// bookworm` made with the host's apt sources (which the image carries, so
// apt inside it uses the host's mirror). Config: Env PATH, Cmd ["bash"].
//
// The first run on a machine pays for mmdebstrap (about 35 s, and it needs
// the Debian mirror); the gzipped layer is then cached in $KILN_TEST_CACHE
// (default /var/tmp/kiln-test-cache) under a key of the sources file, and a
// file lock keeps test packages running in parallel from making it twice.
func DebianImage(t testing.TB) v1.Image {
	t.Helper()
	debianMu.Lock()
	defer debianMu.Unlock()
	if debianImg == nil {
		img, err := harness.Debian(harness.CacheDir(), nil)
		Require(t, err)
		debianImg = img
	}
	return debianImg
}

// PlatformIndex returns an OCI index of two small synthetic images,
// linux/amd64 and linux/arm64/v8 (harness.Platforms). Each has one layer
// with /etc/platform holding its platform ("linux/arm64/v8\n") and an empty
// directory /opt/<arch>, and a config with its os/architecture/variant,
// Env PLATFORM=<platform> and Cmd ["cat","/etc/platform"]. Use it to check
// which platform a build or pull picked; nothing in it can run.
func PlatformIndex(t testing.TB) v1.ImageIndex {
	t.Helper()
	platformMu.Lock()
	defer platformMu.Unlock()
	if platformIdx == nil {
		idx, err := harness.PlatformIndex()
		if err != nil {
			t.Fatal(err)
		}
		platformIdx = idx
	}
	return platformIdx
}

// PushImage pushes img to ref (e.g. "127.0.0.1:PORT/library/busybox:latest")
// over plain HTTP for loopback registries, failing the test on error.
func PushImage(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	if err := harness.Push(ref, img); err != nil {
		t.Fatal(err)
	}
}

// PushIndex pushes an image index and its images to ref.
func PushIndex(t testing.TB, ref string, idx v1.ImageIndex) {
	t.Helper()
	if err := harness.PushIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
}
