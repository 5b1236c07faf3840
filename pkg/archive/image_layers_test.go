package archive

import (
	"bytes"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestImageLayers(t *testing.T) {
	img := empty.Image
	for _, entries := range [][]tent{
		{file("etc/passwd", "root:x:0:0\n"), file("etc/group", "root:x:0:\n")},
		{whiteout("etc/.wh.group"), file("etc/hostname", "kiln\n")},
	} {
		data := mkTar(t, entries...)
		var blob bytes.Buffer
		info, err := WriteLayer(&blob, Gzip, TarOptions{}, func(tw *TarWriter) error {
			hdrs, contents := readTar(t, data)
			for _, h := range hdrs {
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				if _, err := io.WriteString(tw, contents[h.Name]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		compressed := blob.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(compressed)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// go-containerregistry computes the same digests.
		if d, _ := layer.Digest(); d != info.Digest {
			t.Errorf("digest %s, go-containerregistry says %s", info.Digest, d)
		}
		if d, _ := layer.DiffID(); d != info.DiffID {
			t.Errorf("diff id %s, go-containerregistry says %s", info.DiffID, d)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	ops, err := ImageLayers(img)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := BuildTree(ops)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"etc/passwd": true, "etc/group": false, "etc/hostname": true} {
		if _, ok := tree.Lookup(p); ok != want {
			t.Errorf("%s present = %v, want %v", p, ok, want)
		}
	}
	_, content, found, err := FindFile(ops, "/etc/hostname", 1024)
	if err != nil || !found || string(content) != "kiln\n" {
		t.Errorf("FindFile(/etc/hostname) = %q, %v, %v", content, found, err)
	}
}
