// Package registry talks to OCI registries through go-containerregistry:
// reference parsing, the credential chain (auth.json, docker config.json,
// credential helpers), lazy image and index resolution, and transport options
// (retries, insecure registries).
package registry
