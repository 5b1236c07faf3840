package build

import (
	"fmt"
	"os"
	"path"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// Secret is a value a build may show to RUN steps that ask for it with
// --mount=type=secret (from `kiln build --secret`). Its content is read
// when a step needs it and never enters a layer, the history, a cache key
// or a log.
type Secret struct {
	// File is read when set; otherwise the environment variable Env.
	File string
	Env  string
}

func (sec Secret) value() ([]byte, error) {
	if sec.File != "" {
		b, err := os.ReadFile(sec.File)
		if err != nil {
			return nil, fmt.Errorf("reading the secret file: %w", err)
		}
		return b, nil
	}
	v, ok := os.LookupEnv(sec.Env)
	if !ok {
		return nil, fmt.Errorf("environment variable %s is not set", sec.Env)
	}
	return []byte(v), nil
}

// secretMount turns a RUN --mount=type=secret into a read-only bind of a
// file holding the secret (written under dir, a store ShortLivedDir the
// caller releases after the step; relative targets are under cwd) and/or an environment variable, as BuildKit does: the
// id defaults to the base name of the target, the target to
// /run/secrets/ID; env= (alone) exposes it as a variable only. A secret
// the build was not given is an error when required, else the mount is
// left out.
func (s *stageState) secretMount(m *runMount, cwd, dir string) (*sandbox.Mount, []string, error) {
	id := m.ID
	if id == "" {
		id = m.Source
	}
	if id == "" && m.Target != "" {
		id = path.Base(m.Target)
	}
	if id == "" {
		return nil, nil, fmt.Errorf("--mount=type=secret: no id")
	}
	sec, ok := s.b.opts.Secrets[id]
	if !ok {
		if m.Required {
			return nil, nil, fmt.Errorf("--mount=type=secret,id=%s: the build has no secret %q (pass --secret id=%s,src=FILE or --secret id=%s,env=VAR)", id, id, id, id)
		}
		return nil, nil, nil
	}
	data, err := sec.value()
	if err != nil {
		return nil, nil, fmt.Errorf("--mount=type=secret,id=%s: %v", id, err)
	}
	var env []string
	if m.Env != nil {
		name := *m.Env
		if name == "" {
			name = id
		}
		env = append(env, name+"="+string(data))
		if m.Target == "" {
			return nil, env, nil
		}
	}
	target := m.Target
	if target == "" {
		target = "/run/secrets/" + id
	}
	if !path.IsAbs(target) {
		target = path.Join("/", cwd, target)
	}
	mode := os.FileMode(0o400)
	if m.Mode != nil {
		mode = os.FileMode(*m.Mode) & os.ModePerm
	}
	f, err := os.CreateTemp(dir, "secret-")
	if err != nil {
		return nil, nil, err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		return nil, nil, fmt.Errorf("--mount=type=secret,id=%s: writing it for the step failed", id)
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		return nil, nil, err
	}
	if (m.UID != nil && *m.UID != 0) || (m.GID != nil && *m.GID != 0) {
		uid, gid := -1, -1
		if m.UID != nil {
			uid = int(*m.UID)
		}
		if m.GID != nil {
			gid = int(*m.GID)
		}
		if err := os.Lchown(f.Name(), uid, gid); err != nil {
			return nil, nil, fmt.Errorf("--mount=type=secret,id=%s: uid=/gid= need root here (%v); mode=0444 makes it readable by every user instead", id, err)
		}
	}
	return &sandbox.Mount{Type: sandbox.MountBind, Target: path.Clean(target), Source: f.Name(), ReadOnly: true}, env, nil
}
