// Package registry talks to OCI registries through go-containerregistry:
// reference parsing, the credential chain (auth.json, docker config.json,
// credential helpers), lazy image and index resolution, and transport options
// (retries, insecure registries).
//
// Everything is configured by an Options value:
//
//   - ParseReference normalises names like docker (busybox is
//     index.docker.io/library/busybox:latest) and marks loopback and
//     --insecure-registry hosts so that plain HTTP may be used.
//   - Options.Keychain searches podman's and docker's credential files and
//     credential helpers; Login, SaveAuth and Logout maintain them.
//   - Options.RemoteOptions gives go-containerregistry a transport that
//     retries (with bounded backoff, replaying bodies, resuming broken blob
//     downloads with Range requests), honours proxies, extra CAs and TLS
//     settings, and counts traffic into Stats.
//   - Image is lazy: a base image costs its manifest and, when asked for, its
//     config; Stats proves which layers were actually downloaded.
//   - Errors are *Error values with messages for people (which registry,
//     which credential source) that match ErrUnauthorized, ErrManifestUnknown
//     and the other kinds with errors.Is, and never contain secrets.
package registry
