package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// runInputs is everything a RUN step's layer depends on: its cache key is
// the hash of this (cache.Key). The root filesystem is named by the diff
// IDs of the layers below, so the key is content-addressed: the same
// layers, command and settings give the same key on any machine.
type runInputs struct {
	Platform    string       `json:"platform"`
	Chain       string       `json:"chain"`
	Args        []string     `json:"args"`
	Heredocs    []heredoc    `json:"heredocs,omitempty"`
	Env         []string     `json:"env"`
	User        string       `json:"user"`
	Cwd         string       `json:"cwd"`
	Network     string       `json:"network"`
	Mounts      []mountInput `json:"mounts,omitempty"`
	Compression string       `json:"compression"`
	Format      string       `json:"format"`
	Timestamp   int64        `json:"timestamp,omitempty"`
	// OneID: the sandbox maps only the caller, so every file the step
	// makes is owned by root; such a layer is not what a sandbox with
	// subordinate ids would make.
	OneID bool `json:"oneID,omitempty"`
	// Extras: --add-host, --ulimit and --shm-size (absent when unset, so
	// keys without them are what they were).
	Extras *sandbox.Extras `json:"extras,omitempty"`
}

// heredoc is a RUN heredoc as the key sees it (a #! script runs from a
// file, so its text is not in the arguments).
type heredoc struct {
	Name  string `json:"name"`
	Data  string `json:"data"`
	Chomp bool   `json:"chomp,omitempty"`
}

// mountInput is a --mount as the key sees it. A cache mount's content is
// deliberately not part of it (BuildKit does the same): it is a cache.
type mountInput struct {
	Type     string  `json:"type"`
	Target   string  `json:"target"`
	Source   string  `json:"source,omitempty"`
	ReadOnly bool    `json:"ro,omitempty"`
	ID       string  `json:"id,omitempty"`
	Env      *string `json:"env,omitempty"`
	Mode     *uint64 `json:"mode,omitempty"`
	UID      *uint64 `json:"uid,omitempty"`
	GID      *uint64 `json:"gid,omitempty"`
	Required bool    `json:"required,omitempty"`
	From     string  `json:"from,omitempty"`    // chain key of the stage or image bound
	Content  string  `json:"content,omitempty"` // digest of the context files bound
}

// runKey is the cache key of a RUN step (the layers below are complete).
func (s *stageState) runKey(ctx context.Context, c *instructions.RunCommand, args, env []string, network string, oneID bool) (string, error) {
	p := s.runPlatform() // the step's programs' platform, not the target's
	in := runInputs{
		OneID:       oneID,
		Platform:    fmt.Sprintf("%s/%s/%s", p.OS, p.Architecture, p.Variant),
		Args:        args,
		Env:         env,
		User:        s.cfg.Config.User,
		Cwd:         s.cfg.Config.WorkingDir,
		Network:     network,
		Compression: string(s.b.opts.Compression),
		Format:      string(s.b.opts.Format),
	}
	if s.b.opts.Timestamp != nil {
		in.Timestamp = s.b.opts.Timestamp.Unix()
	}
	if !s.b.opts.RunExtras.Zero() {
		in.Extras = &s.b.opts.RunExtras
	}
	for _, f := range c.Files {
		in.Heredocs = append(in.Heredocs, heredoc{Name: f.Name, Data: f.Data, Chomp: f.Chomp})
	}
	var err error
	if in.Chain, err = s.chainKey(); err != nil {
		return "", err
	}
	for _, m := range instructions.GetMounts(c) {
		mi := mountInput{Type: string(m.Type), Target: m.Target, Source: m.Source, ReadOnly: m.ReadOnly, ID: m.CacheID,
			Env: m.Env, Mode: m.Mode, UID: m.UID, GID: m.GID, Required: m.Required}
		if m.Type == instructions.MountTypeBind {
			if m.From != "" {
				if mi.From, err = s.mountChain(ctx, m.From); err != nil {
					return "", err
				}
			} else if mi.Content, err = s.contextDigest(m.Source); err != nil {
				return "", fmt.Errorf("--mount source=%s: %v", m.Source, err)
			}
		}
		in.Mounts = append(in.Mounts, mi)
	}
	return cache.Key("run", in)
}

// mountChain is the chain key of what --mount from= names: a stage's, or
// an image's (by its diff IDs).
func (s *stageState) mountChain(ctx context.Context, from string) (string, error) {
	if dep := s.plan.StageByRef(from, s.run.stage); dep != nil {
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

// cachedRun looks the step up in the cache: on a hit the stage takes the
// cached layer as the step's result.
func (s *stageState) cachedRun(ctx context.Context, key, label, createdBy string) (bool, error) {
	if s.b.opts.Cache == nil || key == "" {
		return false, nil
	}
	e := s.lookupCache(ctx, key, "["+s.stageTag()+" "+label+"]", "running the step", strings.TrimPrefix(createdBy, "RUN "))
	if e == nil {
		return false, nil
	}
	s.layers = append(s.layers, e.Layer)
	s.links = append(s.links, chainLink{key: "run " + key})
	s.noteRunEntries(e.Headers)
	s.users = nil
	s.history(createdBy, false)
	return true, nil
}

// lookupCache asks the step cache for key. A hit is logged as
// "PREFIX CACHED WHAT (layer …[, from REPO])"; a cache that fails is a
// warning (the step goes on as otherwise, said by instead), never an error.
func (s *stageState) lookupCache(ctx context.Context, key, prefix, instead, what string) *cache.Entry {
	e, err := s.b.opts.Cache.Get(ctx, key)
	if err != nil {
		s.b.logf("%s warning: step cache: %v (%s)", prefix, err, instead)
		return nil
	}
	if e == nil {
		return nil
	}
	d, _ := e.Layer.Digest()
	from := ""
	if e.From != "" {
		from = ", from " + e.From
	}
	s.b.logf("%s CACHED %s (layer %s%s)", prefix, what, shortDigest(d), from)
	return e
}

func shortDigest(h v1.Hash) string {
	if len(h.Hex) < 12 {
		return h.String()
	}
	return h.Algorithm + ":" + h.Hex[:12]
}
