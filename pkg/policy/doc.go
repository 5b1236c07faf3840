// Package policy decides which images kiln may read and where it may push,
// before any request reaches a registry.
//
// Two files make a policy:
//
//   - containers' policy.json (containers-policy.json(5), the file podman,
//     buildah and skopeo read): "default" and transports.docker scopes (a
//     registry, a namespace, a repository, a tag or digest, or a *.domain
//     wildcard; the most specific wins) with insecureAcceptAnything,
//     reject, signedBy and sigstoreSigned requirements. It is found at
//     --signature-policy, $KILN_POLICY, $XDG_CONFIG_HOME (or
//     ~/.config)/containers/policy.json or /etc/containers/policy.json,
//     the first that exists. Keys podman does not know are errors, as
//     podman makes them.
//   - kiln-policy.json, next to it, for what policy.json cannot say:
//     "allowPush" (the scopes kiln may write to: push, build --push, copy
//     targets, --cache-to), "requireDigest" (images a Dockerfile reads must
//     be pinned by digest) and "mirrorsOnly" (Docker Hub is only read
//     through --registry-mirror, never directly).
//
// Policy.CheckRead and Policy.CheckWrite answer with a *Violation (naming
// the image, the rule and the file) or with the sigstoreSigned
// requirements the caller must verify before using the image; Explain
// says which rule applies to a reference (kiln policy check). Syntax errors
// name the file, line and column. pkg/registry asks the policy before
// every read and write; pkg/build asks for every image a Dockerfile names
// before the first is fetched.
package policy
