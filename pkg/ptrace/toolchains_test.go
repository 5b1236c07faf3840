//go:build linux && (amd64 || arm64)

package ptrace

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// toolchain is one of TestToolchains' test set: the Debian packages it
// needs, a script using it and the end of the script's output.
type toolchain struct{ name, packages, script, want string }

// TestToolchains runs the test set in traced Debian roots: the
// toolchains come from Debian's packages (apt-get update and install from
// the mirror the Debian test base is made from; apt drops to its _apt
// user, whose directories' owners are recorded), and then work offline on
// local files: pip installs a local wheel (its console script is a #!
// script) and binds an AF_UNIX socket at a relative path, npm ci installs
// a local tarball (a bin linked into node_modules/.bin, run through
// #!/usr/bin/env node, and a postinstall script), go builds a program that
// reports /proc/self/exe, getcwd, a readlink and an AF_UNIX socket at a
// relative path (go finds its GOROOT from its own /proc/self/exe), and
// make runs a recursive make.
//
// Its cost is the traced dpkg runs, and npm's ~390 packages most: npm gets
// a root of its own, started first, and pip, go and make share the other
// (one apt-get update, one install), in parallel with it.
func TestToolchains(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	img := testutil.DebianImage(t)
	files := toolchainFiles(t)
	for _, g := range [][]toolchain{{toolchainNpm}, {toolchainPip, toolchainGo, toolchainMake}} {
		var names, pkgs []string
		for _, c := range g {
			names, pkgs = append(names, c.name), append(pkgs, c.packages)
		}
		t.Run(strings.Join(names, "+"), func(t *testing.T) {
			t.Parallel()
			root, table := rootOf(t, img)
			writeTree(t, filepath.Join(root, "src"), files)
			aptInstall(t, root, table, strings.Join(pkgs, " "))
			for _, c := range g {
				t.Run(c.name, func(t *testing.T) {
					out, code := run(t, root, table, c.script)
					if code != 0 || !strings.HasSuffix(out, c.want) {
						t.Errorf("exit %d, output:\n%s\nwant it to end with:\n%s", code, out, c.want)
					}
				})
			}
		})
	}
}

// aptInstall runs apt-get update and apt-get install of packages, traced
// in root. dpkg's --force-unsafe-io (as in Docker's Debian images) leaves
// out its fsync of every unpacked file: an open and an fsync per file
// that only cost time on a loaded disk.
func aptInstall(t *testing.T, root, table, packages string) {
	t.Helper()
	out, code := run(t, root, table, `set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-unsafe-io `+packages+` >>/tmp/apt.log 2>&1 || { tail -50 /tmp/apt.log; exit 1; }
echo installed; stat -c '%U:%G' /var/cache/apt/archives/partial /var/lib/apt/lists/partial
`, Bind{Guest: "/etc/resolv.conf", Host: "/etc/resolv.conf", ReadOnly: true}, Bind{Guest: "/etc/hosts", Host: "/etc/hosts", ReadOnly: true})
	if code != 0 || !strings.Contains(out, "installed\n_apt:root\n_apt:root\n") {
		t.Fatalf("apt-get install %s: exit %d\n%s", packages, code, out)
	}
}

var (
	toolchainPip = toolchain{"pip", "python3-pip", `cd /src/py && pip install -q --no-index --find-links . --break-system-packages hello-kiln 2>&1
head -1 /usr/local/bin/hello-kiln; hello-kiln; python3 -c 'import hello_kiln, os; print(hello_kiln.__file__, os.getcwd())'
python3 -c 'import socket,os; s=socket.socket(socket.AF_UNIX); s.bind("py.sock"); s.listen(); c=socket.socket(socket.AF_UNIX); c.connect("/src/py/py.sock"); print("unix", os.path.exists("/src/py/py.sock"))'`,
		"#!/usr/bin/python3\nhello from a wheel\n/usr/local/lib/python3.11/dist-packages/hello_kiln/__init__.py /src/py\nunix True\n"}
	toolchainNpm = toolchain{"npm", "nodejs npm", `cd /src/node && npm ci --offline --no-audit --no-fund --loglevel=error >/tmp/npm.log 2>&1 || { cat /tmp/npm.log; exit 1; }
cat postinstall.out; ./node_modules/.bin/dep-hi; readlink node_modules/.bin/dep-hi; node -e 'console.log(process.cwd(), require("fs").realpathSync("/proc/self/exe"))'`,
		"dep-hi hi\ndep-hi hi\n../dep/bin.js\n/src/node /usr/bin/node\n"}
	toolchainGo = toolchain{"go", "golang-go", `cd /src/go && export GOCACHE=/tmp/gocache GOPATH=/tmp/gopath GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0
go build -o /usr/local/bin/hi . && cd /tmp && hi && go env GOROOT`,
		"exe /usr/local/bin/hi\ncwd /tmp\nlink ../lib/go-1.19/bin/go\nunix hello\n/usr/lib/go-1.19\n"}
	toolchainMake = toolchain{"make", "make", `cd /src/make && make -s && cat out/result && stat -c '%U' out/result`,
		"sub /src/make/sub\ntop /src/make\nroot\n"}
)

// toolchainFiles are the local inputs of TestToolchains.
func toolchainFiles(t *testing.T) map[string]string {
	return map[string]string{
		"py/hello_kiln-1.0-py3-none-any.whl": string(zipOf(t, map[string]string{
			"hello_kiln/__init__.py":                    "def main():\n    print('hello from a wheel')\n",
			"hello_kiln-1.0.dist-info/METADATA":         "Metadata-Version: 2.1\nName: hello-kiln\nVersion: 1.0\n",
			"hello_kiln-1.0.dist-info/WHEEL":            "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
			"hello_kiln-1.0.dist-info/entry_points.txt": "[console_scripts]\nhello-kiln = hello_kiln:main\n",
			"hello_kiln-1.0.dist-info/RECORD":           "hello_kiln/__init__.py,,\nhello_kiln-1.0.dist-info/METADATA,,\nhello_kiln-1.0.dist-info/WHEEL,,\nhello_kiln-1.0.dist-info/entry_points.txt,,\nhello_kiln-1.0.dist-info/RECORD,,\n",
		})),
		"node/dep-1.0.0.tgz": string(tgzOf(t, map[string]string{
			"package/package.json": `{"name":"dep","version":"1.0.0","bin":{"dep-hi":"bin.js"},"main":"index.js"}`,
			"package/bin.js":       "#!/usr/bin/env node\nconsole.log('dep-hi ' + require('./index.js').hi());\n",
			"package/index.js":     "exports.hi = () => 'hi';\n",
		})),
		"node/package.json": `{"name":"app","version":"1.0.0","dependencies":{"dep":"file:dep-1.0.0.tgz"},"scripts":{"postinstall":"dep-hi > postinstall.out"}}`,
		"node/package-lock.json": `{"name":"app","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{` +
			`"":{"name":"app","version":"1.0.0","hasInstallScript":true,"dependencies":{"dep":"file:dep-1.0.0.tgz"}},` +
			`"node_modules/dep":{"version":"1.0.0","resolved":"file:dep-1.0.0.tgz","bin":{"dep-hi":"bin.js"}}}}`,
		"go/go.mod": "module example.com/hi\n\ngo 1.19\n",
		"go/main.go": `package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	exe, err := os.Executable()
	check(err)
	fmt.Println("exe", exe)
	wd, err := os.Getwd()
	check(err)
	fmt.Println("cwd", wd)
	link, err := os.Readlink("/usr/bin/go")
	check(err)
	fmt.Println("link", link)
	l, err := net.Listen("unix", "hi.sock")
	check(err)
	go func() {
		c, err := l.Accept()
		check(err)
		fmt.Fprintln(c, "hello")
		c.Close()
	}()
	c, err := net.Dial("unix", "/tmp/hi.sock")
	check(err)
	b := make([]byte, 6)
	_, err = c.Read(b)
	check(err)
	fmt.Print("unix ", string(b))
}

func check(err error) {
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
`,
		"make/Makefile":     "all: out/result\nout/result:\n\tmkdir -p out\n\t$(MAKE) -C sub\n\techo top $(CURDIR) >> out/result\n",
		"make/sub/Makefile": "all:\n\techo sub $$(pwd) > ../out/result\n",
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func zipOf(t *testing.T, files map[string]string) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for name, content := range files {
		f, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tgzOf(t *testing.T, files map[string]string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		mode := int64(0o644)
		if strings.HasSuffix(name, "bin.js") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
