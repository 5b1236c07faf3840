// Package export writes built or stored images to destinations outside
// the store: an OCI image layout (directory or tar), a docker archive, the
// flattened root filesystem as a tar stream or into a local directory.
//
// Each destination is one Exporter; Multi composes several, as
// `kiln build --output` may name more than one, and `kiln save` uses the
// same archive exporters. Parse reads buildx's --output syntax
// (type=oci|docker|tar|local,dest=...). Files are written through a
// temporary name in their directory and renamed into place, so a failure
// leaves nothing behind; a local directory is extracted with package
// archive's safe extraction (nothing is written outside it).
//
// Pushing (type=image,push=true and type=registry) is not an export to a
// path: Parse reports it in the Spec for the caller's push step.
package export
