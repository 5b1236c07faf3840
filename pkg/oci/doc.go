// Package oci names the one thing kiln builds, stores, pushes, pulls and
// exports: an image or an image index (Artifact). v1.Image and
// v1.ImageIndex both are one, as go-containerregistry's remote.Taggable
// and ko's build.Result are; code that needs the one or the other asks
// with AsImage and AsIndex (or a type switch) instead of carrying two
// fields of which exactly one is set.
//
// It also reads them from blobs by digest, lazily (LoadImage, LoadIndex,
// BlobLayer over a BlobSource: kiln's store, or an OCI layout inside an
// archive being read), with the checks both need: well-formed digests
// (CheckDigest), refs (CheckRef), manifests of any kind (ParseManifest),
// size limits (MaxManifestSize, MaxConfigSize) and verified small blobs
// (ReadBlob).
package oci
