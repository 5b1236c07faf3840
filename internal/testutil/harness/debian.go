package harness

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MmdebstrapPath is the program that makes the Debian base image.
const MmdebstrapPath = "/usr/bin/mmdebstrap"

// DebianSources are the host's apt sources that the Debian image is made
// from (and that it carries, so that apt inside it uses the host's mirror),
// in order of preference.
var DebianSources = []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"}

// debianRecipe changes whenever the way the tarball is made changes, so
// that old cache entries are not reused.
const debianRecipe = "kiln-debian-v1"

// DebianLayer returns the path of a gzipped, deterministic layer holding an
// `mmdebstrap --variant=minbase bookworm` root filesystem made from the
// host's apt sources. The first call on a machine runs mmdebstrap (about 35 s,
// it needs the Debian mirror); the result is cached in cacheDir under a key
// of the sources file, the host's apt Check-Valid-Until/Check-Date settings,
// the architecture and the recipe. progress, if not nil, receives
// mmdebstrap's output.
func DebianLayer(cacheDir string, progress io.Writer) (string, error) {
	if err := NeedExecutable(MmdebstrapPath, "mmdebstrap"); err != nil {
		return "", err
	}
	sources := ""
	for _, s := range DebianSources {
		if fi, err := os.Stat(s); err == nil && fi.Size() > 0 {
			sources = s
			break
		}
	}
	if sources == "" {
		return "", fmt.Errorf("no apt sources at %s: the Debian test image is made from the host's mirror",
			strings.Join(DebianSources, " or "))
	}
	srcData, err := os.ReadFile(sources)
	if err != nil {
		return "", err
	}
	aptOpts := hostAptRelaxations()
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%d\n%s\n", debianRecipe, runtime.GOARCH, sources, Epoch.Unix(), strings.Join(aptOpts, "\n"))
	h.Write(srcData)
	key := hex.EncodeToString(h.Sum(nil))[:20]
	out := filepath.Join(cacheDir, "debian-bookworm-minbase-"+key+".tar.gz")

	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	unlock, err := Lock(filepath.Join(cacheDir, "debian.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(out); err == nil { // made while we waited
		return out, nil
	}

	tmp, err := os.MkdirTemp(cacheDir, "tmp-debian-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // mmdebstrap's unshare mode needs to traverse it
		return "", err
	}
	rawTar := filepath.Join(tmp, "rootfs.tar")
	target := "/etc/apt/sources.list.d/debian.sources"
	if !strings.HasSuffix(sources, ".sources") {
		target = "/etc/apt/sources.list"
	}
	args := []string{"--variant=minbase", "--format=tar", "--skip=output/dev"}
	for _, o := range aptOpts {
		args = append(args, "--aptopt="+o)
	}
	args = append(args,
		`--customize-hook=rm -f "$1"/etc/apt/sources.list.d/0000*`,
		`--customize-hook=cp `+shellQuote(sources)+` "$1"`+target,
		`--customize-hook=rm -f "$1"/etc/hostname "$1"/etc/resolv.conf`,
		"bookworm", rawTar, sources)
	cmd := exec.Command(MmdebstrapPath, args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(Epoch.Unix(), 10))
	var log bytes.Buffer
	if progress != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&log, progress), io.MultiWriter(&log, progress)
	} else {
		cmd.Stdout, cmd.Stderr = &log, &log
	}
	if err := cmd.Run(); err != nil {
		l := log.String()
		if len(l) > 4000 {
			l = l[len(l)-4000:]
		}
		hint := ""
		if os.Geteuid() != 0 {
			hint = " (as a non-root user mmdebstrap needs a user namespace and /etc/subuid ranges; running the tests once as root fills the cache " + cacheDir + ")"
		}
		return "", fmt.Errorf("mmdebstrap --variant=minbase bookworm failed: %v%s\n%s", err, hint, l)
	}
	if err := gzipFile(rawTar, filepath.Join(tmp, "layer.tar.gz")); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "layer.tar.gz"), out); err != nil {
		return "", err
	}
	_ = os.WriteFile(out+".info", []byte(fmt.Sprintf("mmdebstrap --variant=minbase bookworm %s\nsources: %s\naptopts: %s\n",
		runtime.GOARCH, sources, strings.Join(aptOpts, " "))), 0o644)
	return out, nil
}

// Debian returns a one-layer OCI image of DebianLayer with Env PATH and
// Cmd ["bash"], for the host's architecture.
func Debian(cacheDir string, progress io.Writer) (v1.Image, error) {
	p, err := DebianLayer(cacheDir, progress)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromFile(p, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	cfg := v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: v1.Config{
			Env: []string{"PATH=" + DefaultPath},
			Cmd: []string{"bash"},
		},
	}
	return NewImage(cfg, []v1.Layer{layer}, []string{"mmdebstrap --variant=minbase bookworm"})
}

// hostAptRelaxations returns the host's Acquire::Check-Valid-Until and
// Acquire::Check-Date settings when they are "false" (a snapshot mirror
// needs them), so that mmdebstrap and apt inside the image accept the same
// mirror as the host.
func hostAptRelaxations() []string {
	out, err := exec.Command("apt-config", "dump").Output()
	if err != nil {
		return nil
	}
	var opts []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == `Acquire::Check-Valid-Until "false";` || l == `Acquire::Check-Date "false";` {
			opts = append(opts, l)
		}
	}
	return opts
}

// gzipFile compresses src into dst (fsynced) with fixed settings, so the
// same input always gives the same bytes.
func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	zw, err := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
