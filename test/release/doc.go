// Package release tests kiln's own images end to end: release/build-images.sh
// builds them with kiln (both platforms, reproducibly) and pushes them to
// Debian's docker-registry; the tests check what is in them (a static
// binary per architecture, newuidmap/newgidmap with file capabilities and
// no setuid bit, the kiln user and its subordinate ids, the volume paths)
// and run them with a private dockerd as a CI runner would, as uid 1000
// and as root, with the default seccomp profile: COPY builds and pushes,
// kaniko's invocation (its /kaniko/.docker/config.json, against a registry
// with TLS and a password), the GitLab and Jenkins templates' script lines
// and the Kubernetes Job's container command; and, with seccomp
// unconfined, RUN steps that chown to other ids through the subordinate
// ranges.
package release
