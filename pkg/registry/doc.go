// Package registry talks to OCI registries through go-containerregistry:
// reference parsing, the credential chain (auth.json, docker config.json,
// credential helpers, built-in ECR credentials), lazy image and index
// resolution, pulls into the local store, pushes and copies, and transport
// options (retries, stall detection, insecure registries, mirrors).
//
// Everything goes through a Client, made once per command by New(Options):
// it owns the transport (and so the connection pools), the credential
// chain, the Stats and the progress reporter, and every operation is one
// of its methods.
//
//   - Client.ParseReference normalises names like docker (busybox is
//     index.docker.io/library/busybox:latest) and marks loopback and
//     --insecure-registry hosts so that plain HTTP may be used.
//   - Client.Keychain is a chain of credential sources, the first with a
//     credential winning (like authn.NewMultiKeychain): --creds, each of
//     podman's and docker's credential files with their credential
//     helpers, and for Amazon ECR hosts AWS itself (keychain.go; a cloud's
//     own credentials are one file, as ecr.go). Login, SaveAuth
//     and Logout maintain the files.
//   - Client.RemoteOptions gives go-containerregistry a transport that
//     retries (with bounded backoff, replaying bodies, resuming broken blob
//     downloads with Range requests), cuts stalled requests, honours
//     proxies, extra CAs and TLS settings, and counts traffic into Stats.
//   - Image, Fetch and Resolve are lazy: a base image costs its manifest
//     and, when asked for, its config; Stats proves which layers were
//     actually downloaded. Docker Hub references are read through
//     Options.Mirrors first. Pull stores what a reference names in the
//     local store, downloading only the layers it lacks.
//   - Write pushes an image or index to any number of tags: blobs the
//     repository has are skipped, blobs another repository of the registry
//     holds are mounted (layers read from there, or the local store's
//     recorded sources), the rest are uploaded in parallel and verified
//     while they stream; manifests go last. PushStored does it for an
//     image of the local store, recording where each blob now is. Copy
//     does the same from a registry reference, keeping manifests byte for
//     byte: within one registry no layer byte moves. Progress events go to
//     Options.Progress (Client.WithProgress).
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
//
// # Why pushes use kiln's own uploader
//
// Reads go through go-containerregistry's remote package; writes (Write,
// Copy, write.go) speak the distribution API themselves rather than use
// remote.MultiWrite, which does not do what kiln's pushes rely on:
//
//   - Mounts from anywhere the blob is known to be. MultiWrite mounts a
//     layer only from the repository it was read from (remote.MountableLayer).
//     Write also mounts from the local store's memory of where each blob
//     was seen (WithSources, recorded through WithSeen by every
//     push: docker's distribution metadata), and a Write to several
//     repositories of one registry uploads to the first and mounts into
//     the others. A token service that refuses the mount sources' pull
//     scope is asked again without them.
//   - Resumption and verification. A failed blob upload is retried from
//     the start with backoff after asking (HEAD) whether the last attempt
//     completed it; every streamed blob is verified against its digest on
//     the way (Copy between registries never stores it), and bytes that do
//     not match their digest are refused, not sent again.
//   - Accounting. Every blob is reported (exists, mounted, uploaded,
//     retried, failed) as a pkg/progress event with its repository and
//     kind, which MultiWrite's progress channel cannot say, and counted
//     into Stats.
//   - Copy keeps manifests byte for byte, children of an index before the
//     index, tags last, any media type an index lists (artifacts and
//     attestations included).
//
// Should remote.MultiWrite gain mounts from caller-given sources and
// per-blob outcomes, Write could move onto it; until then the uploader is
// this package's one piece of the distribution protocol.
package registry
