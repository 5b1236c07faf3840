package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// RootEnv is the environment form of --root.
const RootEnv = "KILN_ROOT"

// Location is where the store goes and why.
type Location struct {
	// Root is the store directory (absolute).
	Root string
	// Source says where it came from: "KILN_ROOT", "/var/lib/kiln (root)",
	// "XDG_DATA_HOME", "HOME" or "TMPDIR".
	Source string
	// Skipped lists the places passed over, and why (a HOME of "/" that
	// cannot be written, say), in the order they were tried.
	Skipped []string
}

// tmpRoot is the last resort: a directory of this uid under TMPDIR.
func tmpRoot() string {
	return filepath.Join(os.TempDir(), "kiln-"+strconv.Itoa(os.Geteuid()))
}

// Locate finds the store: flag (from --root) if given, else $KILN_ROOT,
// else the first usable of /var/lib/kiln (root only), $XDG_DATA_HOME/kiln,
// $HOME/.local/share/kiln and $TMPDIR/kiln-UID. A place is usable when the
// directory exists or can be made and this process may write it; a uid
// without a passwd entry (HOME=/) thus lands under XDG_DATA_HOME or
// TMPDIR instead of failing. The TMPDIR directory is made 0700 and must
// belong to this uid (TMPDIR is shared). An explicit place (flag or
// KILN_ROOT) is returned as is: Open reports what is wrong with it.
func Locate(flag string) (Location, error) {
	return locate(flag, os.Geteuid() == 0)
}

func locate(flag string, asRoot bool) (Location, error) {
	if flag != "" {
		abs, err := filepath.Abs(flag)
		return Location{Root: abs, Source: "--root"}, err
	}
	if env := os.Getenv(RootEnv); env != "" {
		abs, err := filepath.Abs(env)
		return Location{Root: abs, Source: RootEnv}, err
	}
	var loc Location
	try := func(dir, source string) bool {
		if err := usableDir(dir, 0o755); err != nil {
			loc.Skipped = append(loc.Skipped, fmt.Sprintf("%s (%s): %v", dir, source, err))
			return false
		}
		loc.Root, loc.Source = dir, source
		return true
	}
	if asRoot && try("/var/lib/kiln", "/var/lib/kiln (root)") {
		return loc, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) && try(filepath.Join(d, "kiln"), "XDG_DATA_HOME") {
		return loc, nil
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" && filepath.IsAbs(home) && try(filepath.Join(home, ".local", "share", "kiln"), "HOME") {
		return loc, nil
	}
	dir := tmpRoot()
	if err := privateDir(dir); err != nil {
		loc.Skipped = append(loc.Skipped, fmt.Sprintf("%s (TMPDIR): %v", dir, err))
		return loc, fmt.Errorf("no writable place for kiln's store (tried %v): set %s or --root to a writable directory (in a pod: an emptyDir volume)", loc.Skipped, RootEnv)
	}
	loc.Root, loc.Source = dir, "TMPDIR"
	return loc, nil
}

// usableDir makes dir (and its parents) when missing and checks that this
// process can create files in it.
func usableDir(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return err
	}
	if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		return fmt.Errorf("not writable: %w", err)
	}
	return nil
}

// privateDir makes dir 0700 (when missing) and checks that it is a real
// directory of this uid that nobody else can enter: under a shared TMPDIR
// another user could have made it first.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return errors.New("not a directory")
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("belongs to uid %d, not to this uid (%d)", st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return usableDir(dir, 0o700)
}

// TempFallback points TMPDIR at a private directory in the store's tmp
// area when the temp directory cannot be written (a read-only root
// filesystem whose only writable place is the store's volume), so that
// one volume for the store suffices. The directory is removed by release,
// or, after a crash, by the next Open. It does nothing (and release is a
// no-op) when the temp directory is writable.
func (s *Store) TempFallback() (release func(), err error) {
	if TempWritable() {
		return func() {}, nil
	}
	dir, rel, err := s.ShortLivedDir()
	if err != nil {
		return nil, err
	}
	old, had := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", dir)
	return func() {
		if had {
			os.Setenv("TMPDIR", old)
		} else {
			os.Unsetenv("TMPDIR")
		}
		rel()
	}, nil
}

// TempWritable reports whether this process can create files in the temp
// directory (os.TempDir, from TMPDIR).
func TempWritable() bool {
	return unix.Faccessat(unix.AT_FDCWD, os.TempDir(), unix.W_OK|unix.X_OK, unix.AT_EACCESS) == nil
}
