// Package attest makes the supply-chain documents of a built image and
// attaches them the way buildx does.
//
//   - SBOM reads the image's flattened files (never running anything in
//     it) into an SPDX 2.3 JSON document: dpkg's status database (and the
//     files each package's .list names), apk's installed database, rpm's
//     SQLite or Berkeley DB database (read by pkg/attest/rpmdb), Go
//     binaries' build info (debug/buildinfo), Java jars' pom.properties,
//     npm package.json files under node_modules and Python *.dist-info
//     METADATA, each with its package URL, plus the base image as a
//     package the image descends from.
//   - Provenance is SLSA provenance v0.2 in buildx's in-toto statement
//     shape: mode=min (builder, build type, materials' digests,
//     timestamps) or mode=max (adds the Dockerfile, the build arguments
//     without secrets, and the frontend's settings).
//   - Attach wraps an image (or each image of an index) with buildx's
//     attestation manifests: one more manifest per platform in the index,
//     with vnd.docker.reference.type attestation-manifest and
//     vnd.docker.reference.digest naming the image, holding one
//     application/vnd.in-toto+json layer per statement.
package attest
