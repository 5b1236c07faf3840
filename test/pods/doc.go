// Package pods holds the environment-matrix test: a static kiln runs inside
// real containers (a private dockerd, Docker's default seccomp profile) with
// the settings pods have — root, a non-root user, dropped capabilities,
// no_new_privs, seccomp unconfined, a uid without a passwd entry on a
// read-only root filesystem — and in each it builds a COPY-only image, RUN
// workloads (busybox and Debian: users, owners, files) and a RUN
// --mount=type=cache step. The test checks the isolation mode kiln detects
// there (kiln doctor), the Pod Security Standards level doctor names, the
// advice it gives, and that the images built in the container have the same
// tree (owners included) as the ones kiln builds on the host; where a mode
// cannot RUN, the error must be clear and point to kiln doctor.
package pods
