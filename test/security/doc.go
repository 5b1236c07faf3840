// Package security holds kiln's hardening regression tests: one test (or
// more) per finding of the adversarial review, each run against the kiln
// binary built from source, as a user or a CI job would run it, with
// hostile inputs made by the test itself (Dockerfiles, contexts, base
// images, registries that lie) and, for the sandbox, steps that try to get
// out.
//
// Files: input_*_test.go are about inputs (Dockerfiles, contexts, images,
// registries, limits, the store, crash leftovers), sandbox_*_test.go about
// the RUN sandbox, kill_test.go is the kill suite (SIGKILL at random points
// of a build; KILN_KILL_ITERATIONS sets how many), and fuzz targets live
// next to the code they fuzz. See SECURITY.md for the threat model.
package security
