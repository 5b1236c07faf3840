package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// buildahCases are Dockerfiles whose images kiln and buildah must give the
// same file tree (path, type, mode, owner, size, content, link target).
// {{BASE}} is the busybox test image (users root, daemon, app 1000,
// nobody; groups staff 50, app 1000, nogroup).
var buildahCases = []struct{ name, dockerfile string }{
	{"create-file", "RUN echo hello > /hello"},
	{"user-creates", "USER app\nRUN echo mine > /tmp/mine && mkdir /tmp/d"},
	{"user-numeric", "USER 4242:50\nRUN touch /tmp/n"},
	{"workdir-relative", "WORKDIR /srv/app\nRUN echo x > rel && mkdir sub"},
	{"workdir-as-user", "USER app\nWORKDIR /home/app/work\nRUN touch f"},
	{"delete-base-file", "RUN rm /etc/group"},
	{"delete-base-dir", "RUN rm -rf /home/app"},
	{"dir-to-file", "RUN rm -rf /home/app && echo file > /home/app"},
	{"file-to-dir", "RUN rm /etc/passwd && mkdir /etc/passwd && touch /etc/passwd/x"},
	{"opaque-dir", "RUN rm -rf /home && mkdir /home && echo new > /home/only"},
	{"symlink-absolute", "RUN ln -s /etc/passwd /pw"},
	{"symlink-relative-dangling", "RUN mkdir /l && ln -s ../nowhere /l/dangle && ln -s sibling /l/rel"},
	{"replace-base-symlink", "RUN rm /bin/ls && echo fake > /bin/ls && chmod 755 /bin/ls"},
	{"hardlink-new", "RUN mkdir /h && echo data > /h/a && ln /h/a /h/b && ln /h/a /h/c"},
	{"hardlink-to-base", "RUN ln /etc/passwd /etc/passwd.hard"},
	{"setuid", "RUN cp /bin/busybox /usr/bin/suid && chmod 4755 /usr/bin/suid"},
	{"setgid-dir", "RUN mkdir /shared && chmod 2775 /shared && chown 0:50 /shared"},
	{"sticky", "RUN mkdir /drop && chmod 1777 /drop"},
	{"chown-other-users", "RUN mkdir /data && echo a > /data/a && chown 33:33 /data/a && chown 1000:1000 /data"},
	{"chown-by-name", "RUN mkdir /srv && touch /srv/x && chown -R nobody:nogroup /srv"},
	{"chmod-base-file", "RUN chmod 600 /etc/passwd"},
	{"chown-base-dir", "RUN chown 1:1 /var/tmp"},
	{"env-in-run", "ENV GREETING=hi PATH=/bin:/usr/bin\nRUN echo $GREETING > /env.txt"},
	{"arg-in-run", "ARG FLAVOUR=vanilla\nRUN echo $FLAVOUR > /arg.txt"},
	{"shell-change", "SHELL [\"/bin/sh\", \"-e\", \"-c\"]\nRUN echo $- > /flags"},
	{"exec-form", "RUN [\"/bin/sh\", \"-c\", \"echo exec > /exec.txt\"]"},
	{"two-runs-same-file", "RUN echo one > /f\nRUN echo two >> /f"},
	{"delete-earlier-run", "RUN mkdir /tmpd && touch /tmpd/a /tmpd/b\nRUN rm /tmpd/a"},
	{"deep-tree", "RUN mkdir -p /a/b/c/d/e && echo deep > /a/b/c/d/e/f && chmod 700 /a/b"},
	{"fifo", "RUN mkfifo /pipe && chmod 620 /pipe"},
	{"empty-dir", "RUN mkdir /empty"},
	{"odd-names", "RUN mkdir '/with space' && touch '/with space/a b' \"/q'uote\" /$(printf 'x%.0s' $(seq 1 150))"},
	{"rename-base-dir", "RUN mv /home/app /home/renamed"},
	{"copy-then-run", "COPY in.txt /in.txt\nRUN cat /in.txt > /out.txt && chmod 640 /in.txt"},
	// ls -l prints mtimes: the build stage pins them (COPY --from keeps
	// them), else the listing holds the minute the build stage ran.
	{"multi-stage-copy", "FROM {{BASE}} AS build\nRUN mkdir /out && echo art > /out/a && ln -s a /out/l && touch -d '2001-02-03 04:05:06' /out/a && touch -h -d '2001-02-03 04:05:06' /out/l && chmod 750 /out\nFROM {{BASE}}\nCOPY --from=build /out /app\nRUN ls -l /app > /listing"},
	{"multi-stage-chown", "FROM {{BASE}} AS build\nRUN echo art > /art\nFROM {{BASE}}\nCOPY --from=build --chown=app:staff /art /art\nRUN chmod 600 /art"},
	{"run-as-user-after-root", "RUN mkdir /appdir && chown app /appdir\nUSER app\nRUN echo w > /appdir/w && ln -s w /appdir/s"},
}

// buildahStubs are mount points buildah leaves in its images (empty
// /etc/hostname, /etc/hosts and /etc/resolv.conf, mode 0755, and /run)
// when the base lacks them; docker (BuildKit) and kiln leave none. A line
// for one of these paths that only buildah's tree has is not a difference.
// This is the only place where buildah and BuildKit disagree in these
// cases; kiln follows BuildKit (test/oracle checks it against BuildKit).
var buildahStubs = map[string]bool{"/etc/hostname": true, "/etc/hosts": true, "/etc/resolv.conf": true, "/run": true}

// normaliseTree makes two builders' trees comparable:
//   - which name of a set of hardlinks a layer stores as the file and which
//     as links is arbitrary (tar order): a hardlink line becomes a file
//     line with the same size and content;
//   - a directory both builders have only because a layer needed a parent
//     is compared like any other, nothing to do.
func normaliseTree(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 7 && f[1] == "hardlink" {
			f[1], f[6] = "file", "-"
			l = strings.Join(f, " ")
		}
		out = append(out, l)
	}
	return out
}

// TestRunMatchesBuildah builds every case with kiln, in the detected mode
// and in ptrace mode, and with rootless (or, as root, plain) buildah and
// compares the file trees, owners included.
func TestRunMatchesBuildah(t *testing.T) {
	testutil.SkipIfShort(t)
	testutil.RequireProgram(t, "/usr/bin/buildah", "buildah")
	sb := requireRun(t)
	if sb.SingleMapping() {
		t.Skip("buildah needs /etc/subuid ranges for other owners (as does kiln to keep them)")
	}
	reg := testutil.StartInProcessRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	base := reg + "/library/busybox:latest"

	work := t.TempDir()
	bRoot, bRun := filepath.Join(work, "buildah-root"), filepath.Join(work, "buildah-run")
	buildah := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		full := append([]string{"--root", bRoot, "--runroot", bRun, "--storage-driver", "vfs"}, args...)
		cmd := exec.CommandContext(ctx, "/usr/bin/buildah", full...)
		cmd.Env = append(os.Environ(), "BUILDAH_ISOLATION=chroot", "TMPDIR="+work)
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		// Rootless storage holds files of subordinate ids.
		if os.Geteuid() != 0 {
			_ = exec.Command("/usr/bin/buildah", "unshare", "rm", "-rf", bRoot, bRun).Run()
		}
	})
	kilnRoot := runStore(t)
	modes := []string{"detected"}
	// Where kiln gives ptrace mode (not to root with CAP_SYS_ADMIN on the
	// host: CI compares it in the run as kilnuser).
	if _, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModePtrace, Exe: testutil.KilnBinary(t)}); err == nil {
		modes = append(modes, "ptrace")
	} else {
		t.Logf("ptrace mode not compared: %v", err)
	}

	for _, c := range buildahCases {
		t.Run(c.name, func(t *testing.T) {
			df := c.dockerfile
			if !strings.HasPrefix(df, "FROM ") {
				df = "FROM {{BASE}}\n" + df
			}
			df = strings.ReplaceAll(df, "{{BASE}}", base) + "\n"
			ctxDir := filepath.Join(work, "ctx-"+c.name)
			os.MkdirAll(ctxDir, 0o755)
			os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644)
			os.WriteFile(filepath.Join(ctxDir, "in.txt"), []byte("context file\n"), 0o644)

			bDest := filepath.Join(work, "buildah-"+c.name)
			tag := "kiln-diff-" + c.name
			// --format docker: buildah ignores SHELL in OCI images.
			if out, err := buildah("build", "--isolation", "chroot", "--format", "docker", "--tls-verify=false", "--layers=false", "-t", tag, ctxDir); err != nil {
				t.Fatalf("buildah build: %v\n%s", err, out)
			}
			if out, err := buildah("push", tag, "oci:"+bDest); err != nil {
				t.Fatalf("buildah push: %v\n%s", err, out)
			}
			bTree := normaliseTree(testutil.ImageTree(t, ociImage(t, bDest)))

			// The detected mode, and ptrace mode (root emulated, owners
			// recorded) where tracing works.
			for _, mode := range modes {
				kDest := filepath.Join(work, "kiln-"+mode+"-"+c.name)
				args := []string{"--root", kilnRoot, "build", "--output", "type=oci,dest=" + kDest, ctxDir}
				if mode != "detected" {
					// --no-cache: the step cache (not keyed by mode)
					// would answer with the detected mode's layers.
					args = append([]string{"--isolation", mode}, append(args, "--no-cache")...)
				}
				kiln(t, args...)
				kTree := normaliseTree(testutil.ImageTree(t, ociImage(t, kDest)))
				if d := treeDiff(kTree, bTree); len(d) > 0 {
					t.Errorf("kiln in %s mode (-) and buildah (+) trees differ:\n%s\nDockerfile:\n%s", mode, strings.Join(d, "\n"), df)
				}
			}
		})
	}
}

// treeDiff lists the lines only one tree has ("-" kiln, "+" buildah),
// sorted by path, leaving out buildah's mount-point stubs.
func treeDiff(kiln, buildah []string) []string {
	count := map[string]int{}
	for _, l := range kiln {
		count[l]--
	}
	for _, l := range buildah {
		count[l]++
	}
	var out []string
	for l, n := range count {
		if n == 0 {
			continue
		}
		path := strings.Fields(l)[0]
		if n > 0 && buildahStubs[path] {
			continue
		}
		sign := "-"
		if n > 0 {
			sign = "+"
		}
		out = append(out, sign+" "+l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] })
	return out
}
