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
//
// Questions about a base's files come from its layers' path indexes
// (index.go); a stage without RUN whose base has no index at hand goes on
// with guesses while the index is made, and checks them before it is done
// (speculate.go); answers are kept per base (answers.go). COPY, ADD and
// WORKDIR layers are cached in the store by their exact content, with the
// digests of context files kept by stat, so an unchanged rebuild only
// stats its context (copy_cache.go).
package build
