// Package cli holds kiln's subcommands, one file each, with docker- and
// podman-compatible flags and output. It only parses flags and wires the pkg
// packages together.
package cli
