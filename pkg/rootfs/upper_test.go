package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// listTree is a step that lists /t as the step sees it: name, type,
// permissions, owner, size, link target, content digest and, but for
// directories (an overlay counts 1 link for a merged one), link count.
const listTree = `cd /t && B=/bb/busybox && $B find . | $B sort | while read -r f; do
$B stat -c '%n|%F|%a|%u:%g|%s' "$f"
if [ -L "$f" ]; then $B readlink "$f"; elif [ -f "$f" ]; then $B md5sum < "$f"; $B stat -c '%h' "$f"; fi
done`

// TestUpperMatchesApply: layers unpacked into the store (each straight
// into its upper directory, with whiteouts, opaque directories and copies
// from the layers below as the overlay makes them) give the step the same
// tree as the same layers applied one by one onto a plain directory.
func TestUpperMatchesApply(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox")
	}
	sb, st := sandboxStore(t)
	bb := layer(t, dir("bb/"), tent{name: "bb/busybox", typ: tar.TypeReg, mode: 0o755, body: mustRead(t, "/bin/busybox")})
	base := layer(t, dir("t/"), reg("t/file", "f"), dir("t/d/"), reg("t/d/a", "a"), dir("t/d/sub/"), reg("t/d/sub/b", "b"),
		tent{name: "t/keep/", typ: tar.TypeDir, mode: 0o750, uid: 33}, dir("t/keep/in/"), reg("t/keep/in/x", "x"),
		tent{name: "t/lower", typ: tar.TypeReg, mode: 0o640, uid: 33, body: "lower"},
		tent{name: "t/lowlink", typ: tar.TypeSymlink, link: "lower"},
		dir("t/o/"), reg("t/o/old", "o"), dir("t/o/od/"), reg("t/o/od/old2", "o2"),
		dir("t/rd/"), reg("t/rd/c", "c"), reg("t/rf", "rf"), dir("t/sd/"), reg("t/sd/c", "c"),
		dir("t/w/"), reg("t/w/c", "c"), dir("t/v/"), reg("t/v/c", "c"), dir("t/u/"), reg("t/u/c", "c"))
	cases := []struct {
		name   string
		layers []rootfs.Layer
	}{
		{"whiteouts", []rootfs.Layer{layer(t, reg("t/.wh.file", ""), reg("t/.wh.d", ""), reg("t/.wh.nothing", ""), reg("t/keep/in/.wh.x", ""))}},
		{"whiteout then the same name", []rootfs.Layer{layer(t,
			reg("t/.wh.d", ""), dir("t/d/"), reg("t/d/new", "n"), // a new directory in place
			reg("t/.wh.w", ""), reg("t/w/new", "n"), // a parent the layer does not list
			dir("t/v/"), reg("t/v/new", "n"), reg("t/.wh.v", ""), // the whiteout after the entries
			reg("t/.wh.file", ""), reg("t/file", "again"))}},
		{"opaque", []rootfs.Layer{layer(t,
			dir("t/o/"), reg("t/o/.wh..wh..opq", ""), reg("t/o/new", "n"), dir("t/o/od/"), reg("t/o/od/new2", "n2"),
			reg("t/u/new", "n"), reg("t/u/.wh..wh..opq", ""), // marker after, no directory entry
			reg("t/keep/.wh..wh..opq", ""))}},
		{"parents from below", []rootfs.Layer{layer(t, reg("t/keep/in/deep/new", "n"), reg("t/d/sub/c", "c"))}},
		{"hardlinks to lower files", []rootfs.Layer{layer(t,
			tent{name: "t/hl", typ: tar.TypeLink, link: "t/lower"}, tent{name: "t/hs", typ: tar.TypeLink, link: "t/lowlink"},
			tent{name: "t/keep/in/hx", typ: tar.TypeLink, link: "t/keep/in/x"})}},
		{"types replaced", []rootfs.Layer{layer(t,
			reg("t/rd", "a file where a directory was"), dir("t/rf/"), reg("t/rf/in", "i"),
			tent{name: "t/sd", typ: tar.TypeSymlink, link: "d"}, reg("t/.wh.sd", ""), reg("t/sd/.wh.c", ""))}},
		{"three layers", []rootfs.Layer{
			layer(t, reg("t/d/a", "changed"), dir("t/n/"), reg("t/n/one", "1"), reg("t/.wh.rf", "")),
			layer(t, reg("t/d/.wh.a", ""), reg("t/n/.wh..wh..opq", ""), reg("t/n/two", "2"), reg("t/rf/back", "b"),
				tent{name: "t/hd", typ: tar.TypeLink, link: "t/d/sub/b"}),
		}},
		{"opaque root", []rootfs.Layer{layer(t, reg(".wh..wh..opq", ""), dir("t/"), reg("t/only", "o"), dir("t/d/"), reg("t/d/kept", "k"))}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			stack := append(append([]rootfs.Layer{base}, c.layers...), bb)
			lowers, err := st.Prepare(context.Background(), sb, stack, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := runList(t, sb, st, sandbox.Step{Lowers: lowers})
			wc, err := st.TempDir(sb.Key(), "apply-")
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Remove(context.Background(), wc)
			root := filepath.Join(wc, "rootfs")
			for _, l := range stack {
				rc, _ := l.Open()
				if _, err := sb.Apply(context.Background(), root, rc); err != nil {
					t.Fatal(err)
				}
				rc.Close()
			}
			want := runList(t, sb, st, sandbox.Step{Dir: root})
			if got != want {
				t.Errorf("unpacked layers:\n%s\nthe layers applied:\n%s", got, want)
			}
		})
	}
}

func runList(t *testing.T, sb *sandbox.Sandbox, st *rootfs.Store, step sandbox.Step) string {
	t.Helper()
	tmp, err := st.TempDir(sb.Key(), "list-")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Remove(context.Background(), tmp)
	var out, errOut bytes.Buffer
	step.TempDir, step.Env = tmp, []string{"PATH=/bb"}
	step.Args = []string{"/bb/busybox", "sh", "-c", listTree}
	step.Stdout, step.Stderr = &out, &errOut
	res, err := sb.Run(context.Background(), step)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %+v %s", err, res, errOut.String())
	}
	return out.String()
}
