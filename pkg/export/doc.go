// Package export writes built or stored images to destinations outside
// the store: an OCI image layout (directory or tar), a docker archive
// (both written by package imagearchive), the flattened root filesystem as
// a tar stream or into a local directory.
//
// Each destination is one Exporter; Multi composes several, as
// `kiln build --output` may name more than one, and `kiln save` uses the
// same archive exporters. An output Type is one vocabulary for both:
// Parse reads buildx's --output syntax (type=oci|docker|tar|local,
// dest=...), ParseFormat save's --format TYPE-archive. A new output type
// is one file here: its Exporter and an init that registers its kind
// (how it is made from dest=, which keys it takes, whether save writes
// it), as archives.go and rootfs.go do. Files are written through a
// temporary name in their directory and renamed into place, so a failure
// leaves nothing behind; a local directory is extracted with package
// archive's safe extraction (nothing is written outside it).
//
// Pushing (type=image,push=true and type=registry) is not an export to a
// path: Parse reports it in the Spec for the caller's push step.
package export
