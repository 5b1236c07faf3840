// Package oracle is kiln's differential test suite against BuildKit: every
// case is built by `docker build` (dockerd 20.10 from Debian's docker.io,
// BuildKit built in, DOCKER_BUILDKIT=1) and by kiln, and the two images
// must agree on the flattened file tree and on the config.
//
// # Running it
//
//	go test ./test/oracle                      # as root, with docker.io
//	go test ./test/oracle -run 'TestOracle/case/copy-' -v
//
// The suite starts its own docker daemon (testutil.SharedDocker: own
// containerd, data root and socket; no bridge, no iptables), a registry
// (testutil.StartRegistry) with the bases, and an HTTP server on loopback
// for ADD of URLs, and builds kiln from this checkout. Cases run in
// parallel (go test's -parallel, the number of CPUs), docker and kiln
// concurrently within a case; each builder's output is exported (`docker
// save`, kiln's --output type=oci) and flattened. It needs root (dockerd);
// under -short it is skipped. TestCases checks the case files and the
// known-failures table without building.
//
// # What is compared
//
// The tree: every path's type, permission bits (with setuid, setgid,
// sticky; not for symlinks), numeric owner, size and SHA-256 of files,
// link targets, hard-link groups (by their smallest path), xattrs, and the
// mtime where it does not come from the build's clock: an mtime is
// compared only when docker's is older than the start of the suite (it
// came from the context, which every case dates 2022-03-04, from a base,
// an archive, or the HTTP server's Last-Modified). Directories that no
// layer has an entry for count as a runtime would make them (0755, root).
// The config: platform, Env, Cmd, Entrypoint, WorkingDir, User,
// ExposedPorts, Volumes, Labels, OnBuild, StopSignal, Healthcheck, Shell,
// the history's entries and empty_layer flags, and the layer count.
// Layers need not be byte-identical.
//
// Where dockerd 20.10's BuildKit (v0.8) differs from current BuildKit,
// the suite follows current BuildKit, and says so in the case: mount stubs
// (empty directories 20.10 leaves where RUN mounted something) are not
// compared; arm64's v8 variant counts as none; features its frontend lacks
// (COPY --link, --parents, --exclude, heredocs, RUN --network, ADD
// --chmod of URLs, zstd archives, USER without /etc/passwd, ADD --chown of
// archives) are tested through a stand-in Dockerfile that the oracle
// understands and that must give the same image.
//
// # Adding a case
//
// Add testdata/NAME.txtar (NAME is the subtest's name):
//
//	One line saying what the case checks.
//	args: --build-arg V=1 --target t     (flags for both builders)
//	symlink: link -> a.txt               (context set-up, in order)
//	hardlink: b => a.txt
//	chmod: 0700 dir
//	chown: 1000:50 file
//	mkdir: empty 0750
//	xattr: file user.k=v
//	archive: x.tar.gz arcdir [UID:GID]   (.tar .tar.gz .tgz .tar.bz2 .tar.xz .tar.zst)
//	gzip: data.gz data
//	error: both                          (both builders must fail)
//	stub: /mnt                           (a RUN --mount target 20.10 leaves)
//	ignore-mtime: why                    (stand-ins only)
//	ignore-history: why                  (stand-ins only)
//	-- Dockerfile --
//	FROM {{BUSYBOX}}
//	COPY a.txt /a
//	-- oracle.Dockerfile --
//	(optional: what docker builds instead, when 20.10 lacks a feature)
//	-- a.txt --
//	content
//	-- http/file.txt --
//	(served at {{URL}}/file.txt with a fixed Last-Modified)
//
// Every other section is a context file (mode 0644). The placeholders
// {{BUSYBOX}}, {{DEBIAN}}, {{USRMERGE}}, {{NOPASSWD}}, {{CONFIGURED}},
// {{ONBUILD}} and {{INDEX}} name the bases in the suite's registry (see
// pushBases), {{REGISTRY}} the registry, {{URL}} the case's directory on
// the HTTP server.
//
// # Known failures
//
// known_test.go holds the single table of cases where kiln's image still
// differs, each with a one-line reason and the lane that fixes it, and
// optionally what alone may differ (only: every difference must mention
// one of those strings, e.g. "History:" or a path, so the rest of the case
// still guards). Such a case is logged, not failed; when it agrees again
// the log says "now passes: remove from known list". Any difference not in
// the table fails the test, and the suite must keep at least 120 cases.
package oracle
