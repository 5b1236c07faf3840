// Package imagearchive reads and writes images outside kiln's store in the
// formats other tools exchange them in, as go-containerregistry's layout
// and tarball packages do:
//
//   - an OCI image layout directory (WriteLayout), what
//     `buildx --output type=oci,dest=DIR`, skopeo's oci: transport and
//     crane read;
//   - an OCI archive, the same layout in one deterministic tar stream
//     (WriteOCIArchive), for `skopeo copy oci-archive:` and `podman load`;
//   - a docker archive (WriteDockerArchive), `docker save`'s format with
//     manifest.json and repositories, for `docker load`, `podman load` and
//     skopeo's docker-archive: transport.
//
// Read reads any of them (and a compressed tar of them, decompressed by
// package archive) lazily: manifests and configs now, layers when used.
// Images and indexes are oci.Artifacts, read from blobs by digest through
// package oci, like the store's own; written blobs are verified against
// their digests as they are streamed.
//
// The store knows nothing about these formats: `kiln load` reads an
// archive here and writes its items to the store; `kiln save` and
// `kiln build --output type=oci|docker` write the store's or the build's
// images here, through package export's exporters. A new archive format is
// one file here (its writer, and its case in Read) and one exporter kind
// in package export.
package imagearchive
