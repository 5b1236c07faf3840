package ptrace

import (
	"io"
	"time"
)

// Config is one command to run in a root directory.
type Config struct {
	// Root is the root directory (a working copy).
	Root string
	// Binds are guest paths served from host paths; /proc, /dev and /sys
	// are always the host's.
	Binds []Bind
	// Args is the command; Args[0] without a slash is looked up in Env's
	// PATH inside Root.
	Args []string
	Env  []string
	// Cwd is the guest working directory (made when missing).
	Cwd string
	// UID, GID and Groups are the ids the command starts with (emulated).
	UID, GID uint32
	Groups   []uint32
	// Table is the ownership table file of Root (read and updated).
	Table string
	// Probe only checks that tracing works (nothing else is used).
	Probe bool
	// FileSizeLimit, when set, is the command's RLIMIT_FSIZE: a write
	// past it fails with EFBIG (the tracer withholds SIGXFSZ from a
	// process that does not catch it, as if ignored).
	FileSizeLimit int64
}

// Result is how the command ended.
type Result struct {
	Exit   int    `json:"exit"`
	Signal string `json:"signal,omitempty"`
	Err    string `json:"err,omitempty"`
	// Command is the command's wall time.
	Command time.Duration `json:"command"`
	// Stops counts the tracer's stops (a measure of its overhead).
	Stops int `json:"stops"`
	// TraceeCPU is the CPU time of the traced processes (the stub's start
	// included), TracerCPU the tracer's own.
	TraceeCPU, TracerCPU time.Duration `json:"-"`
}

// Options are the command's standard streams and the stub's binary.
type Options struct {
	// Exe is the kiln binary to re-execute as the stub (default
	// /proc/self/exe).
	Exe            string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}
