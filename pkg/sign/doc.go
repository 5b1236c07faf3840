// Package sign signs images and verifies their signatures in cosign's
// formats, with keys (keyless Fulcio/Rekor signing cannot be done: kiln
// has no network path to them, and says so).
//
//   - Keys: cosign's encrypted private key PEM ("ENCRYPTED SIGSTORE
//     PRIVATE KEY", or the older "ENCRYPTED COSIGN PRIVATE KEY"): a JSON
//     envelope of a PKCS#8 key sealed with NaCl secretbox under a scrypt
//     key of the password (COSIGN_PASSWORD); public keys are PKIX "PUBLIC
//     KEY" PEM. GenerateKeyPair writes the same format.
//   - Signatures: the simple-signing payload (critical.identity,
//     critical.image, critical.type "cosign container image signature")
//     signed with ECDSA over its SHA-256, one layer per signature
//     (application/vnd.dev.cosign.simplesigning.v1+json, the base64
//     signature in the dev.cosignproject.cosign/signature annotation) of an
//     image tagged sha256-<hex>.sig in the signed image's repository.
//     Sign appends to the signatures already there, as cosign does. In
//     Referrers mode (cosign's --registry-referrers-mode=oci-1-1) each
//     signature is a manifest of its own with config media type
//     application/vnd.dev.cosign.artifact.sig.v1+json and the image as
//     its subject, listed by the registry's referrers API or the
//     referrers tag (pkg/registry keeps it).
//   - Verify checks the signatures at that tag and the signature
//     referrers of the image against public keys and a
//     containers signedIdentity rule; PolicyVerifier is the
//     registry.SignatureVerifier that enforces policy.json's
//     sigstoreSigned requirements.
package sign
