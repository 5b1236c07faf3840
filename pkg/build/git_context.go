package build

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// GitContext is a build context in a git repository: docker's
// URL[#REF][:DIR] (https://host/org/repo.git#main:app, git@host:org/repo.git)
// and kaniko's git://host/org/repo.git#refs/heads/main.
type GitContext struct {
	// URL is what git clones (credentials never in it).
	URL string
	// Ref is a branch, tag, full ref or commit ("" = the remote's HEAD).
	Ref string
	// Dir is the context's directory in the repository ("" = the root).
	Dir string
}

// GitAuth is how a git context is fetched over HTTP(S): a username and a
// password or token, sent as a header git reads from its environment
// (never in the URL, the process list, the log or an error).
type GitAuth struct {
	Username, Password string
}

var scpLike = regexp.MustCompile(`^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:`)

// ParseGitContext recognises docker's remote git contexts: git://, git@,
// github.com/…, and http(s) URLs whose path ends in .git. ok is false for
// anything else (a directory, a tarball URL).
func ParseGitContext(s string) (GitContext, bool, error) {
	base, frag, _ := strings.Cut(s, "#")
	isGit := false
	switch {
	case strings.HasPrefix(base, "git://"), scpLike.MatchString(base), strings.HasPrefix(base, "ssh://"):
		isGit = true
	case strings.HasPrefix(base, "github.com/"):
		base, isGit = "https://"+base, true
	case strings.HasPrefix(base, "https://"), strings.HasPrefix(base, "http://"):
		u, err := url.Parse(base)
		isGit = err == nil && strings.HasSuffix(u.Path, ".git")
	}
	if !isGit {
		return GitContext{}, false, nil
	}
	if u, err := url.Parse(base); err == nil && u.User != nil {
		return GitContext{}, true, errors.New("a git context URL must not carry credentials: use kiln login for the git host, or GIT_USERNAME/GIT_PASSWORD or GIT_AUTH_TOKEN")
	}
	g := GitContext{URL: base}
	g.Ref, g.Dir, _ = strings.Cut(frag, ":")
	if g.Dir != "" {
		for _, part := range strings.Split(g.Dir, "/") {
			if part == ".." {
				return GitContext{}, true, fmt.Errorf("git context %s: directory %q must be a plain path in the repository", s, g.Dir)
			}
		}
		g.Dir = strings.TrimPrefix(path.Clean("/"+g.Dir), "/")
	}
	if strings.HasPrefix(g.Ref, "-") {
		return GitContext{}, true, fmt.Errorf("git context %s: invalid ref %q", s, g.Ref)
	}
	return g, true, nil
}

// KanikoGitContext reads kaniko's --context git://HOST/REPO[#REF[#COMMIT]]:
// fetched over HTTPS, or HTTP with GIT_PULL_METHOD=http, as kaniko does.
func KanikoGitContext(s string) (GitContext, error) {
	rest := strings.TrimPrefix(s, "git://")
	repo, frag, _ := strings.Cut(rest, "#")
	scheme := "https"
	if m := os.Getenv("GIT_PULL_METHOD"); m != "" {
		if m != "https" && m != "http" {
			return GitContext{}, fmt.Errorf("GIT_PULL_METHOD=%s: want https or http", m)
		}
		scheme = m
	}
	g := GitContext{URL: scheme + "://" + repo}
	ref, commit, _ := strings.Cut(frag, "#")
	g.Ref = ref
	if commit != "" {
		g.Ref = commit
	}
	if strings.HasPrefix(g.Ref, "-") {
		return GitContext{}, fmt.Errorf("--context %s: invalid ref %q", s, g.Ref)
	}
	return g, nil
}

// Host is the git server's host[:port] ("" for scp-like or local URLs).
func (g GitContext) Host() string {
	u, err := url.Parse(g.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	return u.Host
}

// Fetch checks the context out into dest (a new directory) and returns
// the context directory (dest, or its Dir inside it) and the commit
// checked out (for provenance). The repository's .git is removed, as
// BuildKit does.
func (g GitContext) Fetch(ctx context.Context, dest string, auth *GitAuth) (dir, commit string, err error) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return "", "", fmt.Errorf("git context %s: kiln needs the git program to fetch it: %v", g.URL, err)
	}
	env := append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "GIT_CONFIG_NOSYSTEM=1")
	if auth != nil && g.Host() != "" {
		// The header goes through git's environment config, never argv.
		h := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(auth.Username+":"+auth.Password))
		env = append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http."+g.URL+".extraHeader", "GIT_CONFIG_VALUE_0="+h)
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, gitBin, args...)
		cmd.Dir, cmd.Env = dest, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if auth != nil {
				msg = strings.ReplaceAll(msg, auth.Password, "***")
			}
			return fmt.Errorf("git %s: %v: %s", args[0], err, msg)
		}
		return nil
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return "", "", err
	}
	ref := g.Ref
	if ref == "" {
		ref = "HEAD"
	}
	steps := [][]string{{"init", "-q"}, {"remote", "add", "origin", g.URL}}
	for _, s := range steps {
		if err := git(s...); err != nil {
			return "", "", fmt.Errorf("git context %s: %w", g.URL, err)
		}
	}
	if err := git("fetch", "-q", "--depth=1", "--no-tags", "origin", "--", ref); err != nil {
		// A commit the server will not serve by itself: the whole history.
		if !isCommitID(ref) || git("fetch", "-q", "--tags", "origin") != nil {
			return "", "", fmt.Errorf("git context %s#%s: %w", g.URL, g.Ref, err)
		}
		if err := git("checkout", "-q", ref); err != nil {
			return "", "", fmt.Errorf("git context %s#%s: %w", g.URL, g.Ref, err)
		}
	} else if err := git("checkout", "-q", "FETCH_HEAD"); err != nil {
		return "", "", fmt.Errorf("git context %s#%s: %w", g.URL, g.Ref, err)
	}
	if _, err := os.Stat(filepath.Join(dest, ".gitmodules")); err == nil {
		if err := git("submodule", "update", "-q", "--init", "--recursive", "--depth=1"); err != nil {
			return "", "", fmt.Errorf("git context %s: submodules: %w", g.URL, err)
		}
	}
	var head bytes.Buffer
	rev := exec.CommandContext(ctx, gitBin, "rev-parse", "HEAD")
	rev.Dir, rev.Env, rev.Stdout = dest, env, &head
	if err := rev.Run(); err != nil {
		return "", "", fmt.Errorf("git context %s: the commit checked out: %v", g.URL, err)
	}
	commit = strings.TrimSpace(head.String())
	if err := os.RemoveAll(filepath.Join(dest, ".git")); err != nil {
		return "", "", err
	}
	dir = filepath.Join(dest, filepath.FromSlash(g.Dir))
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", "", fmt.Errorf("git context %s: directory %s: %w", g.URL, g.Dir, err)
	}
	root, _ := filepath.EvalSymlinks(dest)
	if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", "", fmt.Errorf("git context %s: directory %s leaves the repository", g.URL, g.Dir)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("git context %s: %s is not a directory in the repository", g.URL, g.Dir)
	}
	return real, commit, nil
}

func isCommitID(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
