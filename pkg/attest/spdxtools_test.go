package attest

import (
	"bytes"
	"testing"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
)

// validateWithSPDXTools reads the document with the SPDX project's own Go
// tools (tools-golang; its Python validator, pyspdxtools, cannot be
// installed on the test machines): its reader takes the JSON into its SPDX
// 2.3 model, ValidateDocument checks that every relationship names an
// element, and nothing the document holds (packages, their external refs,
// files, relationships) may be lost on the way.
func validateWithSPDXTools(t *testing.T, raw []byte, doc *Document) {
	t.Helper()
	parsed, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("tools-golang cannot read the document: %v", err)
	}
	if err := spdxlib.ValidateDocument(parsed); err != nil {
		t.Errorf("tools-golang: invalid document: %v", err)
	}
	if parsed.SPDXVersion != "SPDX-2.3" || len(parsed.Packages) != len(doc.Packages) || len(parsed.Files) != len(doc.Files) ||
		len(parsed.Relationships) != len(doc.Relationships) {
		t.Errorf("tools-golang read %s with %d packages, %d files, %d relationships; wrote %d, %d, %d",
			parsed.SPDXVersion, len(parsed.Packages), len(parsed.Files), len(parsed.Relationships),
			len(doc.Packages), len(doc.Files), len(doc.Relationships))
	}
	for i, p := range parsed.Packages {
		if len(p.PackageExternalReferences) != len(doc.Packages[i].ExternalRefs) {
			t.Errorf("package %s: tools-golang read %d external refs, wrote %d", p.PackageName, len(p.PackageExternalReferences), len(doc.Packages[i].ExternalRefs))
		}
	}
}
