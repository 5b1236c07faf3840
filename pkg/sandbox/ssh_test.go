package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// agentClient is a static program that connects to $SSH_AUTH_SOCK and
// prints the first line it reads (busybox has no unix socket client).
const agentClient = `package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Fprintln(c, "hello")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Print(line)
}
`

// buildAgentClient builds agentClient (static) in a directory of its own,
// removed when the test ends, and returns its path. (Not once per
// process: with -count=2 the second run would get the path the first
// one removed.)
func buildAgentClient(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the agent client with")
	}
	dir, err := os.MkdirTemp("", "kiln-agent-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(agentClient), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module client\n\ngo 1.21\n"), 0o644)
	cmd := exec.Command(goTool, "build", "-o", "client", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if c, err := os.UserCacheDir(); err != nil || unix.Access(c, unix.W_OK) != nil {
		// A user without a writable home (CI's test users).
		cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(dir, "cache"))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	os.RemoveAll(filepath.Join(dir, "cache"))
	os.Chmod(dir, 0o755)
	return filepath.Join(dir, "client")
}

// TestRunSSHEveryMode: RUN --mount=type=ssh reaches the agent in every
// mode (a bind where there is a mount namespace, a relay in chroot mode,
// the tracer's translation in ptrace mode), and in a working copy neither
// the socket nor the directories made for it are left behind.
func TestRunSSHEveryMode(t *testing.T) {
	client := buildAgentClient(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o777)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					c.Write([]byte("agent got " + line))
				}
			}()
		}
	}()
	eachMode(t, func(t *testing.T, fx *fixture) {
		step := sandbox.Step{Mounts: []sandbox.Mount{
			{Type: "bind", Target: "/run/buildkit/ssh_agent.0", Source: sock, ReadOnly: true, Socket: true},
			{Type: "bind", Target: "/usr/local/bin/agent-client", Source: client, ReadOnly: true},
		}}
		fx.prepare(t, &step)
		var before os.FileInfo
		if step.Dir != "" {
			before, _ = os.Stat(step.Dir)
		}
		var out bytes.Buffer
		step.Args = []string{"/bin/sh", "-c", `test -S "$SSH_AUTH_SOCK" && agent-client && agent-client`}
		step.Env = []string{"PATH=/bin:/usr/local/bin", "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0"}
		step.Stdout, step.Stderr = &out, &out
		res, err := fx.sb.Run(context.Background(), step)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%v %+v\n%s", err, res, out.String())
		}
		if out.String() != "agent got hello\nagent got hello\n" {
			t.Errorf("output %q", out.String())
		}
		if step.Dir != "" {
			created := map[string]bool{}
			for _, c := range res.Created {
				created[c] = true
			}
			// The metadata-walk diff would take a changed directory.
			if after, err := os.Stat(step.Dir); err != nil || !after.ModTime().Equal(before.ModTime()) {
				t.Errorf("the root's mtime moved: %v -> %v (%v)", before.ModTime(), after.ModTime(), err)
			}
			for _, p := range []string{"run/buildkit/ssh_agent.0", "run/buildkit", "run"} {
				if _, err := os.Lstat(filepath.Join(step.Dir, p)); err == nil && !created[p] {
					t.Errorf("/%s is left in the working copy", p)
				}
			}
		}
	})
}
