package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// runMount is a RUN --mount, parsed. Its exported fields are in the step's
// key (see runStep). A cache mount's content is deliberately not (BuildKit
// does the same): it is a cache. A bind mount is keyed by what it exposes:
// From or Content, which resolveMountKey fills.
type runMount struct {
	Type     instructions.MountType `json:"type"`
	Target   string                 `json:"target"`
	Source   string                 `json:"source,omitempty"`
	ReadOnly bool                   `json:"ro,omitempty"`
	ID       string                 `json:"id,omitempty"`
	Env      *string                `json:"env,omitempty"`
	Mode     *uint64                `json:"mode,omitempty"`
	UID      *uint64                `json:"uid,omitempty"`
	GID      *uint64                `json:"gid,omitempty"`
	Required bool                   `json:"required,omitempty"`
	// From is the chain key of the stage or image bound (fromRef).
	From string `json:"from,omitempty"`
	// Content is the digest of the context files bound (Source).
	Content string `json:"content,omitempty"`

	// fromRef is the stage or image --mount from= names: keyed by From,
	// what it is.
	fromRef string
}

// parseRunMounts reads the --mount flags of c.
func parseRunMounts(c *instructions.RunCommand) ([]runMount, error) {
	var out []runMount
	for _, m := range instructions.GetMounts(c) {
		switch m.Type {
		case instructions.MountTypeBind, instructions.MountTypeCache, instructions.MountTypeTmpfs,
			instructions.MountTypeSecret, instructions.MountTypeSSH:
		default:
			return nil, fmt.Errorf("--mount=type=%s is not supported (bind, cache, tmpfs, secret and ssh are)", m.Type)
		}
		out = append(out, runMount{
			Type: m.Type, Target: m.Target, Source: m.Source, ReadOnly: m.ReadOnly, ID: m.CacheID,
			Env: m.Env, Mode: m.Mode, UID: m.UID, GID: m.GID, Required: m.Required, fromRef: m.From,
		})
	}
	return out, nil
}

// resolveMountKey fills what the key knows a bind mount by: the chain of
// the stage or image it binds, or the digest of the context files.
func (s *stageState) resolveMountKey(ctx context.Context, m *runMount) error {
	if m.Type != instructions.MountTypeBind {
		return nil
	}
	var err error
	if m.fromRef != "" {
		m.From, err = s.mountChain(ctx, m.fromRef)
		return err
	}
	if m.Content, err = s.contextDigest(m.Source); err != nil {
		return fmt.Errorf("--mount source=%s: %v", m.Source, err)
	}
	return nil
}

// target is where the mount goes in the step's root: relative targets are
// under the working directory.
func (m *runMount) target(cwd string) (string, error) {
	t := m.Target
	if t == "" {
		return "", fmt.Errorf("--mount: no target")
	}
	if !path.IsAbs(t) {
		t = path.Join("/", cwd, t)
	}
	return path.Clean(t), nil
}

// stepMounts turns the step's mounts into sandbox mounts, and the
// variables secret and ssh mounts set. Secret values and agent sockets
// are read here, from the build's options, by the mount's id.
func (s *stageState) stepMounts(ctx context.Context, r *runEnv, st *runStep, note func(string), secretDir string) ([]sandbox.Mount, []string, error) {
	var out []sandbox.Mount
	var env []string
	nSSH := 0
	for i := range st.Mounts {
		m := &st.Mounts[i]
		var sm *sandbox.Mount
		var senv []string
		var err error
		switch m.Type {
		case instructions.MountTypeSSH:
			sm, senv, err = s.sshMount(m, st.Cwd, nSSH)
			nSSH++
		case instructions.MountTypeSecret:
			sm, senv, err = s.secretMount(m, st.Cwd, secretDir)
		default:
			sm, err = s.fsMount(ctx, r, m, st.Cwd, note)
		}
		if err != nil {
			return nil, nil, err
		}
		if sm != nil {
			out = append(out, *sm)
		}
		env = append(env, senv...)
	}
	return out, env, nil
}

// fsMount is a tmpfs, cache or bind mount.
func (s *stageState) fsMount(ctx context.Context, r *runEnv, m *runMount, cwd string, note func(string)) (*sandbox.Mount, error) {
	target, err := m.target(cwd)
	if err != nil {
		return nil, err
	}
	switch m.Type {
	case instructions.MountTypeTmpfs:
		return &sandbox.Mount{Type: sandbox.MountTmpfs, Target: target}, nil
	case instructions.MountTypeCache:
		id := m.ID
		if id == "" {
			id = target
		}
		dir := filepath.Join(r.store.Root(), r.sb.Key(), "cache", cacheDirName(id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		return &sandbox.Mount{Type: sandbox.MountCache, Target: target, Source: dir}, nil
	case instructions.MountTypeBind:
		bm := &sandbox.Mount{Type: sandbox.MountBind, Target: target, ReadOnly: m.ReadOnly}
		if m.fromRef == "" {
			bm.Source, err = s.contextBindSource(m.Source)
		} else {
			bm.Lowers, err = s.mountLowers(ctx, r, m.fromRef, note)
			bm.Source = m.Source
		}
		if err != nil {
			return nil, err
		}
		return bm, nil
	}
	return nil, fmt.Errorf("--mount=type=%s is not supported (bind, cache, tmpfs, secret and ssh are)", m.Type)
}

// contextBindSource is the host path a bind mount of the build context's
// src shows the step.
func (s *stageState) contextBindSource(src string) (string, error) {
	if s.b.ctxSrc == nil {
		return "", fmt.Errorf("--mount=type=bind: there is no build context")
	}
	clean, err := cleanSource(src)
	if err != nil {
		return "", fmt.Errorf("--mount source=%s: %v", src, err)
	}
	p, err := s.b.ctxSrc.resolve(clean, true)
	if err != nil {
		return "", fmt.Errorf("--mount source=%s: %v", src, err)
	}
	dir, err := s.b.ctxSrc.bindSource(p, s.spoolDir)
	if err != nil {
		return "", fmt.Errorf("--mount source=%s: not found in the build context: %v", src, err)
	}
	return dir, nil
}

// mountLowers are the unpacked layers of the stage or image --mount
// from= names, for an overlay.
func (s *stageState) mountLowers(ctx context.Context, r *runEnv, from string, note func(string)) ([]string, error) {
	layers, err := s.mountLayers(ctx, from)
	if err != nil {
		return nil, err
	}
	rl, err := s.rootfsLayers(layers)
	if err != nil {
		return nil, err
	}
	if len(rl) == 0 {
		return nil, fmt.Errorf("--mount from=%s: the image has no layers", from)
	}
	if !r.sb.Overlay() {
		return nil, fmt.Errorf("--mount from=%s needs overlay mounts, which this environment lacks", from)
	}
	return r.store.Prepare(ctx, r.sb, rl, note)
}

// mountLayers are the layers of a stage or image named by --mount from=.
func (s *stageState) mountLayers(ctx context.Context, from string) ([]v1.Layer, error) {
	dep, from := s.stageRef(from)
	if dep != nil {
		run := s.states[dep]
		if run == nil {
			return nil, fmt.Errorf("--mount from=%s: stage not built", from)
		}
		<-run.done
		if run.result == nil {
			return nil, fmt.Errorf("--mount from=%s: stage failed", from)
		}
		for _, l := range run.result.layers {
			if fl, ok := l.(*futureLayer); ok {
				if _, err := fl.wait(); err != nil {
					return nil, err
				}
			}
		}
		return run.result.layers, nil
	}
	src, err := s.b.image(ctx, from, s.platform)
	if err != nil {
		return nil, fmt.Errorf("--mount from=%s: %w", from, err)
	}
	return src.layers, nil
}

// mountChain is the chain key of what --mount from= names: a stage's, or
// an image's (by its diff IDs).
func (s *stageState) mountChain(ctx context.Context, from string) (string, error) {
	dep, from := s.stageRef(from)
	if dep != nil {
		run := s.states[dep]
		if run == nil {
			return "", fmt.Errorf("--mount from=%s: stage not built", from)
		}
		<-run.done
		if run.result == nil {
			return "", fmt.Errorf("--mount from=%s: stage failed", from)
		}
		return foldChain(run.result.links)
	}
	layers, err := s.mountLayers(ctx, from)
	if err != nil {
		return "", err
	}
	ids, err := diffIDs(layers)
	if err != nil {
		return "", err
	}
	return foldChain([]chainLink{baseLink(ids)})
}

func diffIDs(layers []v1.Layer) ([]v1.Hash, error) {
	out := make([]v1.Hash, 0, len(layers))
	for i, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// contextDigest hashes what a bind mount from the build context exposes:
// every path under src with its type, mode, size, link target and the
// sha256 of its content (not times: a fresh checkout has new ones).
func (s *stageState) contextDigest(src string) (string, error) {
	if s.b.ctxSrc == nil {
		return "", fmt.Errorf("there is no build context")
	}
	clean, err := cleanSource(src)
	if err != nil {
		return "", err
	}
	p, err := s.b.ctxSrc.resolve(clean, true)
	if err != nil {
		return "", err
	}
	root := s.b.ctxSrc.abs(p)
	h := sha256.New()
	var paths []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		fmt.Fprintf(h, "%q %o %d %q\n", filepath.ToSlash(rel), fi.Mode(), fi.Size(), link)
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			_, err = io.CopyBuffer(h, f, buf)
			f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// cacheDirName is the directory of a cache mount's id: any string is an
// id (as in BuildKit), and its directory can name nothing else (not "..",
// "/" or another id's): a readable prefix of the id's safe characters and
// a hash of the whole id.
func cacheDirName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 32 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	return b.String() + "-" + hex.EncodeToString(sum[:12])
}

// hasSecretMount reports whether the step mounts a secret.
func (st *runStep) hasSecretMount() bool {
	for _, m := range st.Mounts {
		if strings.EqualFold(string(m.Type), string(instructions.MountTypeSecret)) {
			return true
		}
	}
	return false
}
