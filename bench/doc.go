// Package bench documents kiln's benchmark scripts (see README.md); its
// commands under bench/cmd are the tools the scripts use: pushbase (push
// the test base images to a registry), compress (kiln's layer compressor as
// a filter, for the pipeline floor tar | compress | sha256), floor (the cost
// of writing a build context as gzip layers in one process, a stricter
// lower bound of a COPY-only build), extract (kiln's extractor alone on
// layer tars, for compare.sh's unpack rows) and
// countproxy (a registry proxy that counts the blob bytes fetched).
package bench
