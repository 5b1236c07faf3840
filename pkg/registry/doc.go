// Package registry talks to OCI registries through go-containerregistry:
// reference parsing, the credential chain (auth.json, docker config.json,
// credential helpers, built-in ECR credentials), lazy image and index
// resolution, pushes and copies, and transport options (retries, stall
// detection, insecure registries, mirrors).
//
// Everything is configured by an Options value:
//
//   - ParseReference normalises names like docker (busybox is
//     index.docker.io/library/busybox:latest) and marks loopback and
//     --insecure-registry hosts so that plain HTTP may be used.
//   - Options.Keychain searches --creds, podman's and docker's credential
//     files and credential helpers, and for Amazon ECR hosts asks AWS
//     itself; Login, SaveAuth and Logout maintain the files.
//   - Options.RemoteOptions gives go-containerregistry a transport that
//     retries (with bounded backoff, replaying bodies, resuming broken blob
//     downloads with Range requests), cuts stalled requests, honours
//     proxies, extra CAs and TLS settings, and counts traffic into Stats.
//   - Image, Fetch and Resolve are lazy: a base image costs its manifest
//     and, when asked for, its config; Stats proves which layers were
//     actually downloaded. Docker Hub references are read through
//     Options.Mirrors first.
//   - Write pushes an image or index to any number of tags: blobs the
//     repository has are skipped, blobs another repository of the registry
//     holds are mounted (layers read from there, or the local store's
//     recorded sources), the rest are uploaded in parallel and verified
//     while they stream; manifests go last. Copy does the same from a
//     registry reference, keeping manifests byte for byte: within one
//     registry no layer byte moves. Progress events go to Options.Progress.
//   - OCI 1.1 referrers: a manifest written with a subject (a signature,
//     an attestation) is made findable from it; where the registry has
//     no referrers API (it neither answers OCI-Subject nor
//     GET /v2/<name>/referrers/<digest>) Write adds it to the subject's
//     referrers tag (sha256-<hex>, an OCI index). Referrers lists them
//     from the API or that tag.
//   - Errors are *Error values with messages for people (which registry,
//     which credential source) that match ErrUnauthorized,
//     ErrManifestUnknown, ErrTagImmutable, ErrUnsupportedMediaType,
//     ErrRateLimited, ErrDigestMismatch and the other kinds with errors.Is,
//     and never contain secrets.
//   - Options.Policy (pkg/policy) is asked before the first request of
//     every read (Fetch, Image, Resolve, OpenBlob, Copy's source,
//     ListTags) and write (Write, Copy's targets): a refusal is the error
//     and nothing is sent. Its sigstoreSigned requirements are checked by
//     Options.VerifySignatures once the digest is known, before the
//     config or a layer is read; its mirrorsOnly drops Docker Hub itself
//     from the mirrors' fallback.
package registry
