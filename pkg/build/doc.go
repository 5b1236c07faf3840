// Package build executes a Dockerfile plan: it resolves each stage's base
// (lazily, from a registry, the store, scratch or an earlier stage), turns
// every instruction into a new config and, where needed, a new layer, and
// returns the result as a go-containerregistry v1.Image.
//
// The config and history are BuildKit's (docker 20.10's, the reference of
// the differential tests): the default PATH for stages without one, ARG
// history entries, RUN's "|N ARG=… cmd # buildkit", proxy build args given
// to RUN only (proxy.go). Each platform of --platform is built from its own
// base: picked from an index, or refused when a single-platform base is for
// another platform (base.go). RUN steps for a platform the machine does not
// run natively go through a binfmt_misc handler (binfmt.go).
//
// RunContainer (container.go) runs an image's command as `docker run
// --rm` does, on the same unpacked-layer store and sandbox as RUN steps:
// kiln run. buildx's --annotation values are applied in annotate.go.
// podman's --squash and --squash-all make the target's image one of fewer
// layers after it is built (squash.go, with archive.Squash), history as
// podman writes it; the step cache keeps every step's own layer.
// Every image a Dockerfile names is put to the registry policy
// (pkg/policy) before the first is read (policy.go), and the images read
// are the result's Materials, for SBOMs and provenance (materials.go):
// Attest (attest.go) gives a result the attestation manifests buildx's
// --sbom and --provenance attach, made by package attest.
//
// Questions about a base's files come from its layers' path indexes
// (index.go); a stage without RUN whose base has no index at hand goes on
// with guesses while the index is made, and checks them before it is done
// (speculate.go); answers are kept per base (answers.go; PrunePathAnswers
// drops those about layers the store no longer has). COPY, ADD and
// WORKDIR layers are cached in the store by their exact content, with the
// digests of context files kept by stat, so an unchanged rebuild only
// stats its context (copy_cache.go).
//
// # Steps: one value, its key and its execution
//
// A RUN instruction is parsed once, by parseRun (run_step.go), into a
// runStep: every flag of the instruction and every build option that
// changes what the step does is a field of it, read there and nowhere
// else. The step's cache key is the hash of its exported fields
// (runStep.Key; their JSON is the key's format) and execRun (run.go)
// executes the step from the same fields, as BuildKit's solver.Op has
// CacheMap and Exec over one op. Each RUN flag has its file: run_mount.go
// (--mount; secret.go and ssh.go for its secret and ssh types),
// run_network.go (--network), run_security.go (--security).
//
// A new RUN option (a Dockerfile flag, or a build flag that every RUN
// step gets, as Options.RunExtras gives --add-host, --ulimit and
// --shm-size: runStep.Extras) plugs in in three places, all in the step's
// files:
//
//  1. a field of runStep (or of runMount), exported, added after the
//     others with omitempty, so that the keys of steps that do not use it
//     stay the same and existing caches keep hitting;
//  2. parseRun sets it, from the instruction (instructions.GetX) or from
//     Options, in a run_<flag>.go of its own when it needs parsing or
//     checking;
//  3. sandboxStep (run.go) gives it to the sandbox.Step (or execRun uses
//     it).
//
// A field that must not be in the key (a secret's value, proxy build
// args, the history text) is unexported and says why in runStepNotKeyed
// (run_step_test.go): TestRunStepKey fails for a field that is neither
// keyed nor listed there, and for a keyed field whose change leaves the
// key as it was.
//
// COPY and ADD are read into a copyRequest (copy_step.go); their layer's
// key is made of what the flags produce, the layer's entries by content,
// and of the same layerSpec (compression, format, timestamp) as RUN's
// (copyInputs in copy_cache.go). dispatch (stage.go) sends
// each instruction to its family: ARG, the filesystem steps (WORKDIR,
// COPY/ADD, RUN) and the config-only ones (config_step.go).
package build
