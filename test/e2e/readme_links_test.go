package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeLinks: every relative link of the README and of the other
// Markdown files in the repository names a file or directory of the
// repository itself (they are read on a checkout and on the forge).
func TestReadmeLinks(t *testing.T) {
	root := moduleRoot(t)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Markdown files found")
	}
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := filepath.Join(filepath.Dir(f), target)
			rel, _ := filepath.Rel(root, p)
			if strings.HasPrefix(rel, "..") {
				t.Errorf("%s: link %s leaves the repository", f, m[1])
				continue
			}
			checked++
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: link %s: %v", f, m[1], err)
			}
		}
	}
	if checked == 0 {
		t.Error("no relative link checked")
	}
}
