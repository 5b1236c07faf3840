//go:build linux

package archive

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testImages are OCI layouts made by shared/testenv/base-images.
const testImages = "/var/tmp/testenv/cache/oci"

type ociImage struct {
	layers  []Opener
	diffIDs []string
}

// openOCIImage reads the first image of an OCI layout, or skips the test.
func openOCIImage(t *testing.T, name string) ociImage {
	t.Helper()
	dir := filepath.Join(testImages, name)
	blob := func(digest string) string {
		return filepath.Join(dir, "blobs", strings.Replace(digest, ":", "/", 1))
	}
	readJSON := func(p string, v any) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("test image %s not available: %v", name, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	readJSON(filepath.Join(dir, "index.json"), &index)
	if len(index.Manifests) == 0 {
		t.Skipf("test image %s has no manifest", name)
	}
	var manifest struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	readJSON(blob(index.Manifests[0].Digest), &manifest)
	var config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	readJSON(blob(manifest.Config.Digest), &config)
	var img ociImage
	img.diffIDs = config.RootFS.DiffIDs
	for _, l := range manifest.Layers {
		p := blob(l.Digest)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("test image %s: layer missing: %v", name, err)
		}
		img.layers = append(img.layers, func() (io.ReadCloser, error) {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			rc, _, err := Decompress(f)
			if err != nil {
				f.Close()
				return nil, err
			}
			return struct {
				io.Reader
				io.Closer
			}{rc, closers{rc, f}}, nil
		})
	}
	return img
}

type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func TestRealImages(t *testing.T) {
	for _, name := range []string{"busybox", "debian"} {
		t.Run(name, func(t *testing.T) {
			if name != "busybox" && testing.Short() {
				t.Skip("large image skipped in -short")
			}
			img := openOCIImage(t, name)
			// Decompress gives exactly the bytes the config's diff_ids name.
			for i, open := range img.layers {
				rc, err := open()
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				if _, err := io.Copy(h, rc); err != nil {
					t.Fatal(err)
				}
				rc.Close()
				if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); i < len(img.diffIDs) && got != img.diffIDs[i] {
					t.Errorf("layer %d: diff id %s, config says %s", i, got, img.diffIDs[i])
				}
			}
			tree, err := BuildTree(img.layers)
			if err != nil {
				t.Fatal(err)
			}
			p, n, err := tree.Resolve("/bin/sh")
			if err != nil || n == nil || n.Header.Typeflag != tar.TypeReg {
				t.Fatalf("Resolve(/bin/sh) = %q, %+v, %v", p, n, err)
			}
			t.Logf("/bin/sh resolves to /%s (%d bytes, layer %d)", p, n.Header.Size, n.Layer)

			root := t.TempDir()
			for i, open := range img.layers {
				rc, err := open()
				if err != nil {
					t.Fatal(err)
				}
				err = Extract(rc, root, ExtractOptions{Chown: os.Getuid() == 0, OnSkip: func(name, reason string) {
					t.Logf("skipped %s: %s", name, reason)
				}})
				rc.Close()
				if err != nil {
					t.Fatalf("extract layer %d: %v", i, err)
				}
			}
			compareTreeWithDir(t, tree, img.layers, root)

			// Rewriting the layer through TarWriter is deterministic.
			var infos []LayerInfo
			for range 2 {
				info, err := WriteLayer(io.Discard, Gzip, TarOptions{}, func(tw *TarWriter) error {
					return tree.Walk("", func(n *Node) error {
						if n.Path == "" || n.Header.Typeflag == tar.TypeReg {
							return nil // headers only: content needs ReadFiles
						}
						h := n.Header
						return tw.WriteHeader(&h)
					})
				})
				if err != nil {
					t.Fatal(err)
				}
				infos = append(infos, info)
			}
			if infos[0] != infos[1] {
				t.Errorf("rewrite not deterministic: %+v vs %+v", infos[0], infos[1])
			}
		})
	}
}

func TestRealImageFindFile(t *testing.T) {
	img := openOCIImage(t, "debian")
	if testing.Short() {
		t.Skip("large image skipped in -short")
	}
	hdr, content, found, err := FindFile(img.layers, "/etc/passwd", 1<<20)
	if err != nil || !found {
		t.Fatalf("FindFile(/etc/passwd): %v, found %v", err, found)
	}
	if hdr.Typeflag != tar.TypeReg || !strings.HasPrefix(string(content), "root:x:0:0:") {
		t.Errorf("/etc/passwd: type %q, content %.40q", hdr.Typeflag, content)
	}
}
