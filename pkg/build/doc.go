// Package build executes a Dockerfile plan: it resolves each stage's base
// (lazily, from a registry, the store, scratch or an earlier stage), turns
// every instruction into a new config and, where needed, a new layer, and
// returns the result as a go-containerregistry v1.Image.
package build
