package store

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// noHome makes HOME a regular file, so that no store can go under it (as
// a uid without a passwd entry has HOME=/, which it cannot write).
func noHome(t *testing.T) {
	f := filepath.Join(t.TempDir(), "home-is-a-file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", f)
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv(RootEnv, "")
}

func TestLocateExplicit(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(RootEnv, filepath.Join(dir, "env"))
	loc, err := locate(filepath.Join(dir, "flag"), true)
	if err != nil || loc.Root != filepath.Join(dir, "flag") || loc.Source != "--root" {
		t.Fatalf("--root: %+v, %v", loc, err)
	}
	loc, err = locate("", true)
	if err != nil || loc.Root != filepath.Join(dir, "env") || loc.Source != RootEnv {
		t.Fatalf("KILN_ROOT: %+v, %v", loc, err)
	}
}

func TestLocateXDGThenHome(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(RootEnv, "")
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("HOME", filepath.Join(dir, "home"))
	loc, err := locate("", false)
	if err != nil || loc.Root != filepath.Join(dir, "data", "kiln") || loc.Source != "XDG_DATA_HOME" {
		t.Fatalf("XDG_DATA_HOME: %+v, %v", loc, err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	loc, err = locate("", false)
	if err != nil || loc.Root != filepath.Join(dir, "home", ".local", "share", "kiln") || loc.Source != "HOME" {
		t.Fatalf("HOME: %+v, %v", loc, err)
	}
}

func TestLocateFallsBackToTMPDIR(t *testing.T) {
	noHome(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	want := filepath.Join(tmp, "kiln-"+strconv.Itoa(os.Geteuid()))
	// A leftover directory of ours that others could enter is made private.
	if err := os.Mkdir(want, 0o755); err != nil {
		t.Fatal(err)
	}
	loc, err := locate("", false)
	if err != nil || loc.Root != want || loc.Source != "TMPDIR" {
		t.Fatalf("got %+v, %v; want %s from TMPDIR", loc, err, want)
	}
	if len(loc.Skipped) != 1 || !strings.Contains(loc.Skipped[0], "(HOME)") {
		t.Fatalf("Skipped = %q, want the HOME place", loc.Skipped)
	}
	fi, err := os.Stat(want)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v, %v; want mode 0700", want, fi.Mode(), err)
	}
	if _, err := Open(loc.Root); err != nil {
		t.Fatal(err)
	}
}

func TestLocateRefusesAnotherUsersTMPDIRStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory of another uid")
	}
	noHome(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	d := filepath.Join(tmp, "kiln-0")
	if err := os.Mkdir(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	_, err := locate("", false)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 12345") || !strings.Contains(err.Error(), RootEnv) {
		t.Fatalf("err = %v, want a refusal naming the owner and %s", err, RootEnv)
	}
}

func TestTempFallback(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A writable TMPDIR is left alone.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rel, err := s.TempFallback()
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if os.Getenv("TMPDIR") != tmp {
		t.Fatalf("TMPDIR = %q, want it unchanged", os.Getenv("TMPDIR"))
	}
	// One that cannot be written (missing here) moves into the store.
	missing := filepath.Join(tmp, "missing")
	t.Setenv("TMPDIR", missing)
	rel, err = s.TempFallback()
	if err != nil {
		t.Fatal(err)
	}
	got := os.Getenv("TMPDIR")
	if filepath.Dir(got) != s.tmpDir {
		t.Fatalf("TMPDIR = %q, want a directory in %s", got, s.tmpDir)
	}
	f, err := os.CreateTemp("", "x-")
	if err != nil {
		t.Fatalf("temp file after the fallback: %v", err)
	}
	f.Close()
	rel()
	if os.Getenv("TMPDIR") != missing {
		t.Fatalf("TMPDIR = %q after release, want %q back", os.Getenv("TMPDIR"), missing)
	}
	if _, err := os.Stat(got); !os.IsNotExist(err) {
		t.Fatalf("%s still there after release (%v)", got, err)
	}
}
