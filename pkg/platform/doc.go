// Package platform owns image platforms (os/arch[/variant]) for all of
// kiln: parsing a --platform or FROM --platform value, formatting one, the
// host's platform, writing one as BuildKit does, and deciding whether an
// image for one platform serves another. Normalisation and formatting are
// github.com/containerd/platforms', as in BuildKit and docker.
//
// Two forms are in use. Normalize writes a platform as BuildKit writes it
// into an image or index (arm64 and amd64 without their default variants
// v8 and v1, bare arm as arm/v7); Parse keeps the variant the user wrote
// (linux/arm64/v8 stays so, as docker's --platform does when choosing from
// an index). Matches and Score compare platforms with every default
// variant made explicit, so both forms compare equal.
package platform
