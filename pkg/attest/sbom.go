package attest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Base is the image a built image descends from.
type Base struct {
	Ref    string
	Digest v1.Hash
}

// SBOMOptions describe the image an SBOM is made of.
type SBOMOptions struct {
	// Name is the image's name (its first tag), "" for an untagged build.
	Name string
	// Base is the image the final stage starts from (nil: scratch).
	Base *Base
	// Created is the document's creation time (the build's timestamp).
	Created time.Time
	// Tool names the creator ("kiln-VERSION").
	Tool string
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(parts ...string) string {
	return "SPDXRef-" + strings.Trim(spdxIDUnsafe.ReplaceAllString(strings.Join(parts, "-"), "-"), "-")
}

// SBOM makes the SPDX 2.3 document of img from its files.
func SBOM(img v1.Image, o SBOMOptions) (*Document, error) {
	s, err := scanImage(img)
	if err != nil {
		return nil, err
	}
	dg, err := img.Digest()
	if err != nil {
		return nil, err
	}
	imgName := o.Name
	if imgName == "" {
		imgName = "image"
	}
	doc := &Document{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name:              imgName,
		DocumentNamespace: "https://kiln.invalid/spdx/" + esc(imgName) + "/" + dg.Hex,
		CreationInfo:      CreationInfo{Created: o.Created.UTC().Format(time.RFC3339), Creators: []string{"Tool: " + o.Tool}},
	}
	root := Package{SPDXID: "SPDXRef-image", Name: imgName, VersionInfo: dg.String(), DownloadLocation: "NOASSERTION",
		PrimaryPurpose: "CONTAINER", ExternalRefs: purlRef(ociPurl(o.Name, dg)),
		Checksums: []Checksum{{Algorithm: "SHA256", Value: dg.Hex}}}
	doc.Packages = append(doc.Packages, root)
	doc.Relationships = append(doc.Relationships, Relationship{Element: "SPDXRef-DOCUMENT", Type: "DESCRIBES", Related: root.SPDXID})
	if o.Base != nil {
		bp := Package{SPDXID: "SPDXRef-base-image", Name: o.Base.Ref, VersionInfo: o.Base.Digest.String(), DownloadLocation: "NOASSERTION",
			PrimaryPurpose: "CONTAINER", ExternalRefs: purlRef(ociPurl(o.Base.Ref, o.Base.Digest)),
			Checksums: []Checksum{{Algorithm: "SHA256", Value: o.Base.Digest.Hex}}}
		doc.Packages = append(doc.Packages, bp)
		doc.Relationships = append(doc.Relationships, Relationship{Element: root.SPDXID, Type: "DESCENDANT_OF", Related: bp.SPDXID})
	}
	distro := s.osID
	if s.osVer != "" {
		distro += "-" + s.osVer
	}
	seen := map[string]bool{}
	sort.SliceStable(s.pkgs, func(i, j int) bool {
		a, b := s.pkgs[i], s.pkgs[j]
		return a.kind+a.name+a.version+a.source < b.kind+b.name+b.version+b.source
	})
	fileIDs := map[string]string{}
	for _, f := range s.pkgs {
		id := spdxID("Package", f.kind, f.name, f.version, f.arch, f.source)
		if seen[id] {
			continue
		}
		seen[id] = true
		p := Package{SPDXID: id, Name: f.name, VersionInfo: f.version, DownloadLocation: "NOASSERTION",
			SourceInfo: "acquired package info from /" + f.source, ExternalRefs: purlRef(s.purl(f, distro))}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, Relationship{Element: root.SPDXID, Type: "CONTAINS", Related: id})
		for _, file := range s.owned(f) {
			sum, ok := s.sha1s[file]
			if !ok {
				continue // a directory, or removed by a later layer
			}
			fid, ok := fileIDs[file]
			if !ok {
				fid = spdxID("File", file)
				fileIDs[file] = fid
				doc.Files = append(doc.Files, File{SPDXID: fid, FileName: "/" + file, Checksums: []Checksum{{Algorithm: "SHA1", Value: sum}}})
			}
			doc.Relationships = append(doc.Relationships, Relationship{Element: id, Type: "CONTAINS", Related: fid})
		}
	}
	return doc, nil
}

// owned lists the files a package owns, as its database says.
func (s *scan) owned(f found) []string {
	switch f.kind {
	case "deb":
		if l, ok := s.dpkgList[f.name+":"+f.arch]; ok {
			return l
		}
		return s.dpkgList[f.name]
	case "apk", "rpm":
		return f.files
	}
	return nil
}

// purl is f's package URL (distro: "debian-12").
func (s *scan) purl(f found, distro string) string {
	if f.purl != "" {
		return f.purl
	}
	if f.kind == "rpm" {
		return s.rpmPurl(f, distro)
	}
	ns := s.osID
	if ns == "" {
		ns = map[string]string{"deb": "debian", "apk": "alpine"}[f.kind]
	}
	q := "?arch=" + esc(f.arch)
	if distro != "" {
		q += "&distro=" + esc(distro)
	}
	return fmt.Sprintf("pkg:%s/%s/%s@%s%s", f.kind, esc(ns), esc(f.name), esc(f.version), q)
}

// ociPurl is an image's package URL: pkg:oci/NAME@DIGEST with its
// repository.
func ociPurl(ref string, d v1.Hash) string {
	if ref == "" {
		return ""
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	repo := r.Context()
	last := repo.RepositoryStr()[strings.LastIndexByte(repo.RepositoryStr(), '/')+1:]
	q := "?repository_url=" + esc(repo.Name())
	if t, ok := r.(name.Tag); ok {
		q += "&tag=" + esc(t.TagStr())
	}
	return "pkg:oci/" + esc(last) + "@" + esc(d.String()) + q
}
