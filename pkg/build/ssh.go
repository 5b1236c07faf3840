package build

import (
	"fmt"
	"os"
	"path"
	"strconv"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// sshMount turns RUN --mount=type=ssh into a bind of an ssh-agent socket
// the build was given (`kiln build --ssh ID=SOCKET`), at target (default
// /run/buildkit/ssh_agent.N, as BuildKit) with SSH_AUTH_SOCK pointing at
// it. The agent's keys never enter the step, only the socket. n numbers
// the step's ssh mounts.
func (s *stageState) sshMount(m *runMount, cwd string, n int) (*sandbox.Mount, []string, error) {
	id := m.ID
	if id == "" {
		id = "default"
	}
	sock, ok := s.b.opts.SSH[id]
	if !ok {
		if m.Required {
			return nil, nil, fmt.Errorf("--mount=type=ssh,id=%s: the build has no ssh agent %q (pass --ssh %s or --ssh %s=SOCKET)", id, id, id, id)
		}
		return nil, nil, nil
	}
	fi, err := os.Stat(sock)
	if err != nil {
		return nil, nil, fmt.Errorf("--mount=type=ssh,id=%s: %v", id, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, nil, fmt.Errorf("--mount=type=ssh,id=%s: %s is not a socket (kiln forwards ssh-agent sockets: start ssh-agent and ssh-add the key)", id, sock)
	}
	target := m.Target
	if target == "" {
		target = "/run/buildkit/ssh_agent." + strconv.Itoa(n)
	}
	if !path.IsAbs(target) {
		target = path.Join("/", cwd, target)
	}
	target = path.Clean(target)
	return &sandbox.Mount{Type: sandbox.MountBind, Target: target, Source: sock, ReadOnly: true, Socket: true},
		[]string{"SSH_AUTH_SOCK=" + target}, nil
}
