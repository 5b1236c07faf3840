package build

import (
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// The flags of COPY and ADD (expanded) are read here, into the request
// doCopy executes, and nowhere else. A COPY or ADD layer's key is not made
// of these flags but of what they produce: the layer's entries by content,
// and the layerSpec it is written with (copyInputs), so that no flag can
// change the layer without changing the key.

// copyRequestOf reads a COPY instruction.
func copyRequestOf(c *instructions.CopyCommand, loc []parser.Range) copyRequest {
	return copyRequest{
		name: "COPY", sd: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod,
		link: c.Link, exclude: c.ExcludePatterns, parents: c.Parents, loc: loc,
	}
}

// addRequestOf reads an ADD instruction.
func addRequestOf(c *instructions.AddCommand, loc []parser.Range) copyRequest {
	unpack := true
	if c.Unpack != nil {
		unpack = *c.Unpack
	}
	return copyRequest{
		name: "ADD", sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, link: c.Link,
		exclude: c.ExcludePatterns, add: true, unpack: unpack, checksum: c.Checksum, loc: loc,
	}
}
