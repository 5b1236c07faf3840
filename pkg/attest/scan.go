package attest

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha1"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// found is a package found in the image's files.
type found struct {
	kind          string // deb, apk, rpm, golang, maven, npm, pypi
	name, version string
	arch          string
	epoch, vendor string // rpm's
	purl          string
	source        string   // the file it was read from
	files         []string // files the package owns, when the database says
}

// scanLimit bounds a file read whole for what it holds (a jar, a binary).
const scanLimit = 256 << 20

// scan is what one pass over the image's flattened files found.
type scan struct {
	pkgs     []found
	dpkgList map[string][]string // package (or package:arch) -> owned paths
	sha1s    map[string]string   // regular file -> SHA-1 (for owned files)
	osID     string
	osVer    string
	rpm      map[string]*rpmFiles // rpm database directory -> its files
	errs     []string
}

// scanImage reads img's flattened filesystem once.
func scanImage(img v1.Image) (*scan, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	s := &scan{dpkgList: map[string][]string{}, sha1s: map[string]string{}}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image's files: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if err := s.file(p, h, tr); err != nil {
			s.errs = append(s.errs, fmt.Sprintf("/%s: %v", p, err))
		}
	}
	s.rpmPackages()
	return s, nil
}

// file looks at one regular file.
func (s *scan) file(p string, h *tar.Header, r io.Reader) error {
	base := path.Base(p)
	hash := sha1.New()
	r = io.TeeReader(r, hash)
	defer func() {
		_, _ = io.Copy(io.Discard, r)
		s.sha1s[p] = hex.EncodeToString(hash.Sum(nil))
	}()
	switch {
	case p == "var/lib/dpkg/status" || strings.HasPrefix(p, "var/lib/dpkg/status.d/") && !strings.HasSuffix(p, ".md5sums"):
		return s.dpkg(p, r)
	case strings.HasPrefix(p, "var/lib/dpkg/info/") && strings.HasSuffix(p, ".list"):
		return s.dpkgFiles(strings.TrimSuffix(base, ".list"), r)
	case p == "lib/apk/db/installed":
		return s.apk(p, r)
	case isRPMDB(p):
		return s.rpmFile(p, h.Size, r)
	case p == "etc/os-release" || p == "usr/lib/os-release" && s.osID == "":
		s.osRelease(r)
	case strings.HasSuffix(base, ".jar") || strings.HasSuffix(base, ".war"):
		return s.jar(p, h.Size, r)
	case base == "package.json" && isNodeModule(p):
		return s.npm(p, r)
	case base == "METADATA" && strings.HasSuffix(path.Dir(p), ".dist-info"):
		return s.python(p, r)
	case h.Mode&0o111 != 0 && h.Size > 4 && h.Size <= scanLimit:
		return s.goBinary(p, h.Size, r)
	}
	return nil
}

// paragraphs splits an RFC 822-style database (dpkg status, apk
// installed) into key/value records; continuation lines are joined.
func paragraphs(r io.Reader, sep string, each func(map[string]string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	rec := map[string]string{}
	last := ""
	flush := func() {
		if len(rec) > 0 {
			each(rec)
		}
		rec, last = map[string]string{}, ""
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case (line[0] == ' ' || line[0] == '\t') && last != "":
			rec[last] += "\n" + strings.TrimSpace(line)
		default:
			k, v, ok := strings.Cut(line, sep)
			if !ok {
				continue
			}
			last = k
			if old, dup := rec[k]; dup && sep == ":" && len(k) == 1 {
				rec[k] = old + "\n" + strings.TrimSpace(v) // apk repeats R: per file
			} else {
				rec[k] = strings.TrimSpace(v)
			}
		}
	}
	flush()
	return sc.Err()
}

func (s *scan) dpkg(p string, r io.Reader) error {
	return paragraphs(r, ":", func(rec map[string]string) {
		st := strings.Fields(rec["Status"])
		if rec["Package"] == "" || len(st) < 3 || st[2] == "not-installed" || st[2] == "config-files" {
			return
		}
		s.pkgs = append(s.pkgs, found{kind: "deb", name: rec["Package"], version: rec["Version"], arch: rec["Architecture"], source: p})
	})
}

func (s *scan) dpkgFiles(pkg string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if f := strings.TrimSpace(sc.Text()); f != "" && f != "/." {
			s.dpkgList[pkg] = append(s.dpkgList[pkg], strings.TrimPrefix(f, "/"))
		}
	}
	return sc.Err()
}

func (s *scan) apk(p string, r io.Reader) error {
	return paragraphs(r, ":", func(rec map[string]string) {
		if rec["P"] == "" {
			return
		}
		f := found{kind: "apk", name: rec["P"], version: rec["V"], arch: rec["A"], source: p}
		// F: is a directory, R: the files in it (in order).
		dir := ""
		for _, line := range strings.Split(rec["F"]+"\n", "\n") {
			dir = line
			break
		}
		for _, r := range strings.Split(rec["R"], "\n") {
			if r != "" {
				f.files = append(f.files, path.Join(dir, r))
			}
		}
		s.pkgs = append(s.pkgs, f)
	})
}

func (s *scan) osRelease(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			s.osID = v
		case "VERSION_ID":
			s.osVer = v
		}
	}
}

func (s *scan) jar(p string, size int64, r io.Reader) error {
	if size > scanLimit {
		return nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("not a zip archive: %v", err)
	}
	for _, f := range zr.File {
		if !strings.HasPrefix(f.Name, "META-INF/maven/") || path.Base(f.Name) != "pom.properties" || f.UncompressedSize64 > 1<<20 {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		props := map[string]string{}
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || line[0] == '#' || line[0] == '!' {
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				props[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		rc.Close()
		if props["artifactId"] == "" {
			continue
		}
		s.pkgs = append(s.pkgs, found{kind: "maven", name: props["groupId"] + ":" + props["artifactId"], version: props["version"],
			purl: "pkg:maven/" + esc(props["groupId"]) + "/" + esc(props["artifactId"]) + "@" + esc(props["version"]), source: p + "!/" + f.Name})
	}
	return nil
}

// isNodeModule reports whether p is node_modules/NAME/package.json or
// node_modules/@SCOPE/NAME/package.json (a package's own manifest).
func isNodeModule(p string) bool {
	parts := strings.Split(p, "/")
	n := len(parts)
	switch {
	case n >= 3 && parts[n-3] == "node_modules" && !strings.HasPrefix(parts[n-2], "@"):
		return true
	case n >= 4 && parts[n-4] == "node_modules" && strings.HasPrefix(parts[n-3], "@"):
		return true
	}
	return false
}

func (s *scan) npm(p string, r io.Reader) error {
	var pj struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&pj); err != nil {
		return fmt.Errorf("package.json: %v", err)
	}
	if pj.Name == "" {
		return nil
	}
	purl := "pkg:npm/" + esc(pj.Name) + "@" + esc(pj.Version)
	if scope, nm, ok := strings.Cut(pj.Name, "/"); ok {
		purl = "pkg:npm/" + esc(scope) + "/" + esc(nm) + "@" + esc(pj.Version)
	}
	s.pkgs = append(s.pkgs, found{kind: "npm", name: pj.Name, version: pj.Version, purl: purl, source: p})
	return nil
}

func (s *scan) python(p string, r io.Reader) error {
	var nm, ver string
	sc := bufio.NewScanner(io.LimitReader(r, 16<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break // the headers end; the description follows
		}
		if v, ok := strings.CutPrefix(line, "Name: "); ok {
			nm = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "Version: "); ok {
			ver = strings.TrimSpace(v)
		}
	}
	if nm == "" {
		return nil
	}
	norm := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(nm))
	s.pkgs = append(s.pkgs, found{kind: "pypi", name: nm, version: ver, purl: "pkg:pypi/" + esc(norm) + "@" + esc(ver), source: p})
	return nil
}

func (s *scan) goBinary(p string, size int64, r io.Reader) error {
	head := make([]byte, 4)
	if _, err := io.ReadFull(r, head); err != nil || string(head) != "\x7fELF" {
		return nil
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	bi, err := buildinfo.Read(bytes.NewReader(append(head, rest...)))
	if err != nil {
		return nil // not a Go binary (or one without build info)
	}
	src := p
	if bi.Main.Path != "" {
		s.pkgs = append(s.pkgs, found{kind: "golang", name: bi.Main.Path, version: bi.Main.Version,
			purl: "pkg:golang/" + bi.Main.Path + "@" + esc(bi.Main.Version), source: src})
	}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		s.pkgs = append(s.pkgs, found{kind: "golang", name: m.Path, version: m.Version,
			purl: "pkg:golang/" + m.Path + "@" + esc(m.Version), source: src})
	}
	s.pkgs = append(s.pkgs, found{kind: "golang", name: "stdlib", version: bi.GoVersion,
		purl: "pkg:golang/stdlib@" + esc(strings.TrimPrefix(bi.GoVersion, "go")), source: src})
	return nil
}

// esc percent-encodes a purl component (everything but unreserved
// characters).
func esc(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
