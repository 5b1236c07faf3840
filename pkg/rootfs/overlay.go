package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLowers is the kernel's limit on overlay layers (OVL_MAX_STACK).
const maxLowers = 500

// OverlayOptions describe one overlay mount.
type OverlayOptions struct {
	// Lowers are the layer directories, bottom first.
	Lowers []string
	// Upper and Work are the writable directories ("" for a read-only
	// mount of the lowers).
	Upper, Work string
	// UserXattr is set inside a user namespace: overlay keeps its
	// metadata in user.overlay.* instead of trusted.overlay.* xattrs.
	UserXattr bool
	// ReadOnly mounts the result read-only.
	ReadOnly bool
}

// MountOverlay mounts an overlay of opts at target. Lower directories are
// passed through short symlinks in scratch (an empty directory) when their
// paths would not fit in the kernel's one-page mount option limit.
func MountOverlay(target, scratch string, opts OverlayOptions) error {
	if len(opts.Lowers) == 0 {
		return errors.New("overlay: no lower directory")
	}
	if len(opts.Lowers) > maxLowers {
		return fmt.Errorf("overlay: %d layers, the kernel allows at most %d", len(opts.Lowers), maxLowers)
	}
	if opts.Upper == "" && len(opts.Lowers) == 1 {
		// overlay needs two lowers without an upper: a read-only bind does.
		if err := unix.Mount(opts.Lowers[0], target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", opts.Lowers[0], err)
		}
		return unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
	top := make([]string, len(opts.Lowers)) // overlay lists the top layer first
	for i, l := range opts.Lowers {
		top[len(opts.Lowers)-1-i] = l
	}
	data := overlayData(top, opts)
	if len(data) >= os.Getpagesize()-1 {
		// Short names relative to scratch, the working directory while
		// mounting.
		short := make([]string, len(top))
		for i, l := range top {
			name := "l" + strconv.Itoa(i)
			if err := os.Symlink(l, filepath.Join(scratch, name)); err != nil {
				return fmt.Errorf("overlay: %w", err)
			}
			short[i] = name
		}
		data = overlayData(short, opts)
		if len(data) >= os.Getpagesize()-1 {
			return fmt.Errorf("overlay: %d layers do not fit in the mount options", len(top))
		}
		old, err := os.Getwd()
		if err != nil {
			return err
		}
		if err := unix.Chdir(scratch); err != nil {
			return err
		}
		defer unix.Chdir(old)
	}
	var flags uintptr
	if opts.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	err := unix.Mount("overlay", target, "overlay", flags, data+",index=off,metacopy=off,redirect_dir=off")
	if errors.Is(err, unix.EINVAL) {
		// Kernels that do not know one of those options.
		err = unix.Mount("overlay", target, "overlay", flags, data)
	}
	if err != nil {
		return fmt.Errorf("mount overlay (%d layers) at %s: %w", len(top), target, err)
	}
	return nil
}

func overlayData(top []string, opts OverlayOptions) string {
	var b strings.Builder
	b.WriteString("lowerdir=")
	for i, l := range top {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(escapeOverlayPath(l))
	}
	if opts.Upper != "" {
		b.WriteString(",upperdir=" + escapeOverlayPath(opts.Upper) + ",workdir=" + escapeOverlayPath(opts.Work))
	}
	if opts.UserXattr {
		b.WriteString(",userxattr")
	}
	return b.String()
}

// escapeOverlayPath escapes the characters overlay's option parser splits
// on.
func escapeOverlayPath(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`)
	return r.Replace(p)
}

// Stub is a mount point a step needs in its root filesystem.
type Stub struct {
	// Path is relative to the root, clean, without a leading "/".
	Path string
	// Dir is set for a directory, else a file is made with Content.
	Dir     bool
	Content string
	// OnlyInExisting makes the stub only where its parent directory
	// already exists.
	OnlyInExisting bool
}

// MakeStubs creates, in the empty directory dir, what the stubs need that
// the overlay of lowers (bottom first) lacks. dir is then mounted as the
// topmost lower, so the mount points never land in the step's upper
// directory. Existing parents are copied with their owner, mode and times
// so that the merged view is unchanged. A stub whose path goes through a
// symlink or a non-directory is left out and reported in skipped.
func MakeStubs(dir string, lowers []string, stubs []Stub) (skipped []string, err error) {
	top := make([]string, len(lowers))
	for i, l := range lowers {
		top[len(lowers)-1-i] = l
	}
	made := map[string]bool{}
	var copied []copiedDir
	// Copied directories get their times back last: making the stubs in
	// them moved those.
	defer func() {
		for i := len(copied) - 1; i >= 0; i-- {
			c := copied[i]
			_ = unix.UtimesNano(c.path, []unix.Timespec{c.st.Atim, c.st.Mtim})
		}
	}()
	for _, s := range stubs {
		p := filepath.Clean("/" + s.Path)[1:]
		if p == "" {
			continue
		}
		st, err := mergedLstat(top, p)
		switch {
		case err == nil && (st.Mode&unix.S_IFMT == unix.S_IFDIR) == s.Dir:
			continue // exists, of the right kind: mount onto it
		case err == nil:
			skipped = append(skipped, "/"+p)
			continue
		case !errors.Is(err, unix.ENOENT):
			skipped = append(skipped, "/"+p)
			continue
		}
		parts := strings.Split(p, "/")
		if s.OnlyInExisting && len(parts) > 1 {
			if pst, err := mergedLstat(top, strings.Join(parts[:len(parts)-1], "/")); err != nil || pst.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
		}
		// Parents.
		ok := true
		for i := 1; i < len(parts) && ok; i++ {
			q := strings.Join(parts[:i], "/")
			if made[q] {
				continue
			}
			pst, err := mergedLstat(top, q)
			switch {
			case err == nil && pst.Mode&unix.S_IFMT == unix.S_IFDIR:
				if err := copyDir(filepath.Join(dir, q), pst); err != nil {
					return skipped, err
				}
				copied = append(copied, copiedDir{filepath.Join(dir, q), pst})
			case errors.Is(err, unix.ENOENT):
				if err := os.Mkdir(filepath.Join(dir, q), 0o755); err != nil {
					return skipped, err
				}
			default:
				ok = false
				continue
			}
			made[q] = true
		}
		if !ok {
			skipped = append(skipped, "/"+p)
			continue
		}
		leaf := filepath.Join(dir, p)
		if s.Dir {
			err = os.Mkdir(leaf, 0o755)
		} else {
			err = os.WriteFile(leaf, []byte(s.Content), 0o644)
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return skipped, err
		}
		made[p] = true
	}
	return skipped, nil
}

type copiedDir struct {
	path string
	st   *unix.Stat_t
}

func copyDir(p string, st *unix.Stat_t) error {
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	_ = unix.Lchown(p, int(st.Uid), int(st.Gid)) // a single-id mapping cannot
	return unix.Chmod(p, st.Mode&0o7777)
}

// mergedLstat stats the clean relative path p as the overlay of top (top
// layer first) shows it, following no symlink: ENOENT when it does not
// exist (or is whited out), ENOTDIR when a parent is not a directory.
func mergedLstat(top []string, p string) (*unix.Stat_t, error) {
	cands := top
	cur := ""
	parts := strings.Split(p, "/")
	for i, c := range parts {
		cur = filepath.Join(cur, c)
		var found *unix.Stat_t
		var next []string
		for _, l := range cands {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(l, cur), &st); err != nil {
				continue
			}
			if isWhiteout(&st) {
				break
			}
			if found == nil {
				s := st
				found = &s
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				break
			}
			if found.Mode&unix.S_IFMT != unix.S_IFDIR {
				break
			}
			next = append(next, l)
			if isOpaque(filepath.Join(l, cur)) {
				break
			}
		}
		if found == nil {
			return nil, unix.ENOENT
		}
		if i == len(parts)-1 {
			return found, nil
		}
		if found.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, unix.ENOTDIR
		}
		cands = next
	}
	return nil, unix.ENOENT
}

// isWhiteout reports whether st is an overlay whiteout (a 0/0 character
// device).
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// Overlay's opaque-directory xattrs (root and user namespace flavours).
const (
	trustedOpaque = "trusted.overlay.opaque"
	userOpaque    = "user.overlay.opaque"
)

func isOpaque(p string) bool {
	buf := make([]byte, 4)
	for _, k := range []string{trustedOpaque, userOpaque} {
		n, err := unix.Lgetxattr(p, k, buf)
		if err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}
