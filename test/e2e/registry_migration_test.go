package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// migrationScript is a CI job's docker script with docker replaced by
// kiln, word for word: an ECR-style login (the password from a pipe, user
// AWS), one build with three tags, three pushes.
const migrationScript = `set -euo pipefail
printf '%s' "$PASS" | kiln login --username AWS --password-stdin "$REG"
kiln build --build-arg PIPELINE_ID_ARG=123 -t "$REG/app:t1" -t "$REG/app:t2" -t "$REG/app:t3" -f docker/Dockerfile-build .
kiln push "$REG/app:t1"
kiln push "$REG/app:t2"
kiln push "$REG/app:t3"
`

// TestRegistryMigration runs migrationScript with bash in a project laid
// out like the CI repositories it comes from (docker/Dockerfile-build,
// build/libs/... from the java-layers workload), against a TLS registry
// with basic auth standing in for ECR. The CA reaches kiln through
// SSL_CERT_FILE, so the commands need no extra flag. The only deviation
// from the script is where the store is: `kiln` on PATH is a wrapper that
// adds --root with a test directory.
func TestRegistryMigration(t *testing.T) {
	testutil.SkipIfShort(t)
	s := testutil.StartTLSBasicRegistry(t, testutil.SetupOptions{User: "AWS"})
	base := testutil.DebianImage(t)
	s.Push(t, "library/debian:bookworm", base)
	java := workload(t, "java-layers")

	project := filepath.Join(t.TempDir(), "project")
	if err := os.MkdirAll(filepath.Join(project, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(java, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	const argLine = "ARG REGISTRY=127.0.0.1:5000\n"
	if !bytes.Contains(df, []byte(argLine)) {
		t.Fatalf("java-layers/Dockerfile has no line %q", argLine)
	}
	df = bytes.Replace(df, []byte(argLine), []byte("ARG REGISTRY="+s.Addr+"\n"), 1)
	writeFile(t, filepath.Join(project, "docker", "Dockerfile-build"), string(df))
	if out, err := exec.Command("cp", "-a", filepath.Join(java, "build"), filepath.Join(project, "build")).CombinedOutput(); err != nil {
		t.Fatalf("cp -a build: %v\n%s", err, out)
	}

	u := newKilnUser(t)
	bin := filepath.Join(t.TempDir(), "bin")
	writeFile(t, filepath.Join(bin, "kiln"), "#!/bin/sh\nexec "+testutil.KilnBinary(t)+" --root \"$KILN_E2E_ROOT\" \"$@\"\n")
	if err := os.Chmod(filepath.Join(bin, "kiln"), 0o755); err != nil {
		t.Fatal(err)
	}
	u.setenv("PATH", bin+":"+os.Getenv("PATH"))
	u.setenv("KILN_E2E_ROOT", u.root)
	u.setenv("SSL_CERT_FILE", s.CAFile)
	u.setenv("REG", s.Addr)
	u.setenv("PASS", s.Password)

	ctx, cancel := context.WithTimeout(context.Background(), kilnTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", migrationScript)
	cmd.Dir = project
	cmd.Env = u.environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := run{args: []string{"(bash script)"}, stdout: stdout.String(), stderr: stderr.String(), err: err}
	u.runs = append(u.runs, r)
	if err != nil {
		t.Fatalf("the migrated script failed: %v\n%s\n%s", err, migrationScript, r)
	}
	t.Logf("the script's output:\n%s", r)
	if !strings.Contains(r.stdout, "Login Succeeded") {
		t.Errorf("no Login Succeeded\n%s", r)
	}
	var digests []string
	for _, tag := range []string{"t1", "t2", "t3"} {
		d := pushedDigest(t, r, s.Ref("app:"+tag))
		got, blobs := s.VerifyBlobs(t, "app:"+tag)
		if got.String() != d {
			t.Errorf("app:%s is %s in the registry; kiln push printed %s", tag, got, d)
		}
		if len(blobs) != 8 {
			t.Errorf("app:%s has %d blobs, want 8 (config, base, WORKDIR, 5 COPY)", tag, len(blobs))
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Errorf("the three tags of one build have different digests: %v", digests)
	}
	img := s.Image(t, "app:t1")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cf.Config.Env, "PIPELINE_ID=123") {
		t.Errorf("Env %q lacks PIPELINE_ID=123 (--build-arg PIPELINE_ID_ARG=123)", cf.Config.Env)
	}
	layers, _ := img.Layers()
	baseLayers, _ := base.Layers()
	l0, _ := layers[0].Digest()
	b0, _ := baseLayers[0].Digest()
	if l0 != b0 {
		t.Errorf("first layer %s, want the base's %s", l0, b0)
	}
	jar := fileSHA256(t, filepath.Join(project, "build/libs/dependencies/BOOT-INF/lib/big-lib-0-1.0.0.jar"))
	if got := treeField(t, testutil.ImageTree(t, img), "/application/BOOT-INF/lib/big-lib-0-1.0.0.jar", 5); got != jar {
		t.Errorf("big-lib-0-1.0.0.jar in the pushed image has sha256 %s, the project's %s", got, jar)
	}
	if got := readAuth(t, filepath.Join(u.home, ".docker", "config.json"), s.Addr); got != "AWS:"+s.Password {
		t.Errorf("~/.docker/config.json holds %q for %s after the login", got, s.Addr)
	}
	u.noSecrets(t, s.Password)
}
