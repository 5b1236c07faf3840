package sandbox

import "github.com/kiln-build/kiln/pkg/rootfs"

// helperArg0 is argv[0] of the re-executed helper.
const helperArg0 = "kiln-sandbox-init"

// jobKind is what a job asks the helper to do (doJob's switch).
type jobKind string

// The helper's jobs.
const (
	jobProbe  jobKind = "probe"  // what the mode can do here (detect.go)
	jobUnpack jobKind = "unpack" // a layer from stdin into Dest, over Lowers
	jobApply  jobKind = "apply"  // a layer from stdin onto Dir
	jobDiff   jobKind = "diff"   // the overlay upper Dest as a layer on stdout
	jobWalk   jobKind = "walk"   // the working copy Dir's changes as a layer
	jobRemove jobKind = "remove" // Paths removed where their owners are visible
	jobRun    jobKind = "run"    // a RUN step (Run)
	jobVerify jobKind = "verify" // Dest compared with the layer on stdin
)

// job is what the helper is asked to do; it travels as JSON.
type job struct {
	Kind jobKind `json:"kind"`

	Userns    bool `json:"userns,omitempty"`
	SingleMap bool `json:"singleMap,omitempty"` // only the caller is mapped
	Chroot    bool `json:"chroot,omitempty"`
	UserXattr bool `json:"userXattr,omitempty"`

	// unpack: overlay of Lowers with upper Dest; apply: onto Dir.
	Lowers []string `json:"lowers,omitempty"`
	Dest   string   `json:"dest,omitempty"`
	Work   string   `json:"work,omitempty"`
	Dir    string   `json:"dir,omitempty"`
	Chown  bool     `json:"chown,omitempty"`

	// run
	Run *runSpec `json:"run,omitempty"`

	// diff (overlay upper Dest) and walk (working copy Dir)
	Exclude []string `json:"exclude,omitempty"`
	SnapIn  string   `json:"snapIn,omitempty"`
	SnapOut string   `json:"snapOut,omitempty"`

	// remove
	Paths []string `json:"paths,omitempty"`

	// probe: a scratch directory
	Scratch string `json:"scratch,omitempty"`

	// Profile, when set, is a file for a CPU profile of the job
	// (KILN_CPUPROFILE: benchmarks).
	Profile string `json:"profile,omitempty"`
}

// runSpec is one RUN step.
type runSpec struct {
	// Root: an overlay of Lowers with Upper/Work, mounted at Target; or the
	// working copy Dir.
	Lowers  []string `json:"lowers,omitempty"`
	Upper   string   `json:"upper,omitempty"`
	Work    string   `json:"work,omitempty"`
	Target  string   `json:"target,omitempty"`
	Scratch string   `json:"scratch,omitempty"`
	Dir     string   `json:"dir,omitempty"`

	Mounts []Mount `json:"mounts,omitempty"`
	// chrootFiles are the file mounts of a chroot step, read by the
	// helper before it enters the chroot.
	chrootFiles []chrootFile
	Hosts       string `json:"hosts,omitempty"`
	Resolv      string `json:"resolv,omitempty"`

	Args    []string `json:"args"`
	Env     []string `json:"env"`
	User    string   `json:"user,omitempty"`
	Cwd     string   `json:"cwd,omitempty"`
	Network Network  `json:"network,omitempty"`
	// HostLoopback lets a private network's gateway reach the host's
	// loopback (an --add-host NAME:host-gateway).
	HostLoopback bool `json:"hostLoopback,omitempty"`
	// Ulimits and ShmSize come from Step.Extras (extras.go).
	Ulimits []Ulimit `json:"ulimits,omitempty"`
	// PidsLimit is the step's RLIMIT_NPROC (limits_linux.go; 0: none).
	PidsLimit int64 `json:"pidsLimit,omitempty"`
	ShmSize   int64 `json:"shmSize,omitempty"`
	// Disk is the step's disk quota (quota.go; nil: none).
	Disk *diskSpec `json:"disk,omitempty"`
}

// result is what the helper reports.
type result struct {
	Exit   int              `json:"exit"`
	CmdNS  int64            `json:"cmdNs,omitempty"` // the command's own wall time
	Signal string           `json:"signal,omitempty"`
	Err    string           `json:"err,omitempty"`
	Notes  []string         `json:"notes,omitempty"`
	Stats  rootfs.DiffStats `json:"stats"`
	// Created lists what a working-copy run made as mount points (left
	// out of the diff).
	Created []string `json:"created,omitempty"`
	// Disk says why the step was stopped for its disk use (quota.go).
	Disk *DiskError `json:"disk,omitempty"`
	// probe
	Overlay    string `json:"overlay,omitempty"` // "" when it works, else why not
	Proc       string `json:"proc,omitempty"`    // "" when a fresh /proc mounts
	UIDMapSeen string `json:"uidMap,omitempty"`
}

// MountType is what a Mount gives the step (RUN --mount's secret and ssh
// types come as binds of a file and of a socket).
type MountType string

// The mount types.
const (
	// MountBind is a host directory or file, or a path of Lowers.
	MountBind MountType = "bind"
	// MountCache is a host directory kept between steps (--mount=type=cache).
	MountCache MountType = "cache"
	// MountTmpfs is an empty writable directory that is never kept.
	MountTmpfs MountType = "tmpfs"
)

// Mount is an extra mount of a RUN step (RUN --mount).
type Mount struct {
	Type MountType `json:"type"`
	// Target is the absolute path in the step's root.
	Target string `json:"target"`
	// Source is a host directory or file (bind from the context, cache).
	Source string `json:"source,omitempty"`
	// Lowers, instead of Source, are layer directories (bottom first) of
	// the stage or image to bind; Source is then the path in it.
	Lowers []string `json:"lowers,omitempty"`
	// ReadOnly mounts it read-only; a writable bind gets a scratch upper
	// directory (writes are discarded, as docker does).
	ReadOnly bool `json:"readOnly,omitempty"`
	// Upper and Work are the scratch directories of a writable bind.
	Upper string `json:"upper,omitempty"`
	Work  string `json:"work,omitempty"`
	// File is set when Source is a file.
	File bool `json:"file,omitempty"`
	// Socket is set when Source is a unix socket (an ssh agent's).
	Socket bool `json:"socket,omitempty"`
}
