package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	units "github.com/docker/go-units"
)

// A step's disk quota (quota_linux.go enforces it):
//
//   - --disk-limit SIZE (docker's and podman's --storage-opt size=): what
//     one RUN step may write to disk (its overlay upper directory, the
//     scratch uppers of its writable binds, or its working copy's growth);
//     0, the default, is no limit. A single file larger than the limit
//     fails at once with EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored).
//   - --disk-reserve SIZE|N%: a step that has written more than
//     ReserveGrace is stopped when the store's filesystem has less than
//     this much available, whatever --disk-limit says. The default,
//     DefaultReservePercent of the filesystem but at most
//     DefaultReserveMax, is what keeps the machine's other users (logs,
//     package managers, other builds' commits) working: ext4 keeps 5% for
//     root by default for the same reason, and 2 GiB is enough for that on
//     any disk, so a large disk is not held back by hundreds of GiB.

// DiskLimitEnv and DiskReserveEnv set the limits when the flags do not.
const (
	DiskLimitEnv   = "KILN_DISK_LIMIT"
	DiskReserveEnv = "KILN_DISK_RESERVE"
)

// The default reserve: 5% of the filesystem, at most 2 GiB.
const (
	DefaultReservePercent = 5
	DefaultReserveMax     = 2 << 30
)

// ReserveGrace is how much a step may write while the filesystem is below
// the reserve before it is stopped: a step that writes next to nothing
// (an ENV-like RUN, a small config file) still runs on a nearly full disk.
const ReserveGrace = 16 << 20

// Reserve is the free space a step must leave on the store's filesystem.
type Reserve struct {
	// Bytes, when Percent is 0; 0 and 0: no reserve.
	Bytes int64 `json:"bytes,omitempty"`
	// Percent of the filesystem's size, at most Max bytes (0: no cap).
	Percent float64 `json:"percent,omitempty"`
	Max     int64   `json:"max,omitempty"`
}

// DefaultReserve is min(5%, 2 GiB).
var DefaultReserve = Reserve{Percent: DefaultReservePercent, Max: DefaultReserveMax}

// For is the reserve on a filesystem of total bytes.
func (r Reserve) For(total int64) int64 {
	if r.Percent <= 0 {
		return r.Bytes
	}
	n := int64(float64(total) * r.Percent / 100)
	if r.Max > 0 && n > r.Max {
		n = r.Max
	}
	return n
}

// String is the reserve as --disk-reserve takes it.
func (r Reserve) String() string {
	switch {
	case r == DefaultReserve:
		return fmt.Sprintf("auto (%g%%, at most %s)", r.Percent, units.BytesSize(float64(r.Max)))
	case r.Percent > 0:
		return fmt.Sprintf("%g%%", r.Percent)
	}
	return units.BytesSize(float64(r.Bytes))
}

// ParseReserve reads --disk-reserve: "auto" or "" (the default), a size
// (2g, 512MiB, bytes), N% of the filesystem, or 0 for none.
func ParseReserve(s string) (Reserve, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "auto", "default":
		return DefaultReserve, nil
	case "0", "0%", "none":
		return Reserve{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f >= 100 {
			return Reserve{}, fmt.Errorf("--disk-reserve %q: want a percentage below 100, such as 5%%", s)
		}
		return Reserve{Percent: f}, nil
	}
	n, err := ParseDiskSize(s)
	if err != nil {
		return Reserve{}, fmt.Errorf("--disk-reserve %q: %w", s, err)
	}
	return Reserve{Bytes: n}, nil
}

// ParseDiskSize reads a size as docker's --storage-opt size= does (10g,
// 512m, 1.5GiB, 1048576; binary units); 0 is 0.
func ParseDiskSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as 10g, 512m or 1073741824")
	}
	return n, nil
}

var (
	diskMu      sync.Mutex
	diskLimit   int64
	diskReserve = DefaultReserve
)

func init() {
	if v := os.Getenv(DiskLimitEnv); v != "" {
		if n, err := ParseDiskSize(v); err == nil {
			SetDiskLimit(n)
		}
	}
	if v := os.Getenv(DiskReserveEnv); v != "" {
		if r, err := ParseReserve(v); err == nil {
			SetDiskReserve(r)
		}
	}
}

// SetDiskLimit sets what a RUN step of this process may write (bytes; 0
// or less: no limit).
func SetDiskLimit(n int64) {
	if n < 0 {
		n = 0
	}
	diskMu.Lock()
	diskLimit = n
	diskMu.Unlock()
}

// DiskLimit is the current per-step disk limit (0: none).
func DiskLimit() int64 {
	diskMu.Lock()
	defer diskMu.Unlock()
	return diskLimit
}

// SetDiskReserve sets the free space steps must leave on the store's
// filesystem.
func SetDiskReserve(r Reserve) {
	diskMu.Lock()
	diskReserve = r
	diskMu.Unlock()
}

// DiskReserve is the current reserve.
func DiskReserve() Reserve {
	diskMu.Lock()
	defer diskMu.Unlock()
	return diskReserve
}

// DiskError is how a step that was stopped for its disk use ends: Run
// returns it (errors.As finds it).
type DiskError struct {
	// Limit is --disk-limit when the step wrote more than it, else 0.
	Limit int64 `json:"limit,omitempty"`
	// Wrote is what the step had written when it was stopped (as
	// measured; -1 when it was not measured).
	Wrote int64 `json:"wrote"`
	// Reserve, Avail and Path: the step was stopped because the
	// filesystem at Path had only Avail bytes available, below Reserve.
	Reserve int64  `json:"reserve,omitempty"`
	Avail   int64  `json:"avail,omitempty"`
	Path    string `json:"path,omitempty"`
}

func (e *DiskError) Error() string {
	size := func(n int64) string { return units.BytesSize(float64(n)) }
	if e.Limit > 0 {
		return fmt.Sprintf("the step wrote more than %s (--disk-limit); it was stopped", size(e.Limit))
	}
	wrote := ""
	if e.Wrote >= 0 {
		wrote = ", after writing " + size(e.Wrote)
	}
	return fmt.Sprintf("the filesystem of the store (%s) has %s available, less than the %s kept free (--disk-reserve): the step was stopped%s", e.Path, size(e.Avail), size(e.Reserve), wrote)
}

// diskSpec is a step's quota, for the process that watches it.
type diskSpec struct {
	Limit   int64   `json:"limit,omitempty"`
	Reserve Reserve `json:"reserve"`
	// Dir is the tree measured: the step's temporary directory (its
	// overlay upper, work and scratch uppers) or its working copy.
	Dir string `json:"dir"`
	// WorkCopy: Dir is a working copy (its size before the step is
	// subtracted).
	WorkCopy bool `json:"workCopy,omitempty"`
	// Skip are paths below Dir that are not the step's (a chroot step's
	// mounts, moved into its root).
	Skip []string `json:"skip,omitempty"`
}

// stepDisk is the quota of a step whose writable tree is dir (nil when
// neither a limit nor a reserve applies).
func stepDisk(dir string, workCopy bool) *diskSpec {
	d := &diskSpec{Limit: DiskLimit(), Reserve: DiskReserve(), Dir: dir, WorkCopy: workCopy}
	if d.Limit == 0 && d.Reserve == (Reserve{}) {
		return nil
	}
	return d
}
