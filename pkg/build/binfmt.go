package build

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/dockerfile"
	plat "github.com/kiln-build/kiln/pkg/platform"
)

// binfmtDir is where the kernel lists its binfmt_misc handlers.
var binfmtDir = "/proc/sys/fs/binfmt_misc"

// elfIdent is what identifies a platform's executables: ELF class (1 =
// 32-bit, 2 = 64-bit), byte order (true = big endian) and e_machine.
type elfIdent struct {
	class   byte
	big     bool
	machine uint16
}

var elfMachines = map[string]elfIdent{
	"amd64":    {2, false, 62},
	"386":      {1, false, 3},
	"arm64":    {2, false, 183},
	"arm":      {1, false, 40},
	"ppc64le":  {2, false, 21},
	"ppc64":    {2, true, 21},
	"s390x":    {2, true, 22},
	"riscv64":  {2, false, 243},
	"mips64le": {2, false, 8},
	"mips64":   {2, true, 8},
	"mipsle":   {1, false, 8},
	"mips":     {1, true, 8},
	"loong64":  {2, false, 258},
}

// elfHeader is the start of an executable (ET_EXEC) for the platform, as a
// binfmt_misc magic is matched against it.
func (e elfIdent) header() []byte {
	h := make([]byte, 20)
	copy(h, "\x7fELF")
	h[4] = e.class
	h[5] = 1
	if e.big {
		h[5] = 2
	}
	h[6] = 1 // EI_VERSION
	var order binary.ByteOrder = binary.LittleEndian
	if e.big {
		order = binary.BigEndian
	}
	order.PutUint16(h[16:], 2) // ET_EXEC
	order.PutUint16(h[18:], e.machine)
	return h
}

// binfmtHandler is one binfmt_misc entry.
type binfmtHandler struct {
	name, interpreter, flags string
	enabled                  bool
	offset                   int
	magic, mask              []byte
}

func readBinfmtHandler(p string) (*binfmtHandler, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	h := &binfmtHandler{name: filepath.Base(p)}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch k {
		case "enabled":
			h.enabled = true
		case "interpreter":
			h.interpreter = v
		case "flags:":
			h.flags = v
		case "offset":
			h.offset, _ = strconv.Atoi(v)
		case "magic":
			h.magic, _ = hex.DecodeString(v)
		case "mask":
			h.mask, _ = hex.DecodeString(v)
		}
	}
	return h, nil
}

// matches reports whether the handler takes executables starting with hdr.
func (h *binfmtHandler) matches(hdr []byte) bool {
	if len(h.magic) == 0 || h.offset+len(h.magic) > len(hdr) {
		return false
	}
	for i, m := range h.magic {
		mask := byte(0xff)
		if i < len(h.mask) {
			mask = h.mask[i]
		}
		if hdr[h.offset+i]&mask != m&mask {
			return false
		}
	}
	return true
}

// nativePlatform reports whether this machine runs p's programs itself.
func nativePlatform(p v1.Platform) bool {
	if p.OS != "linux" {
		return false
	}
	switch {
	case p.Architecture == runtime.GOARCH:
		return true
	case runtime.GOARCH == "amd64" && p.Architecture == "386":
		return true
	}
	return false
}

// foreignRunHint is what to do when no handler runs p's programs.
func foreignRunHint(p v1.Platform) string {
	return fmt.Sprintf("install qemu-user-static and register its binfmt_misc handlers with the fix-binary flag (F): "+
		"Debian's package does on install where binfmt_misc is mounted at %s (mount -t binfmt_misc binfmt_misc %s; systemctl restart systemd-binfmt); "+
		"in Kubernetes, on the node; or run the build on a %s machine",
		binfmtDir, binfmtDir, plat.Format(p))
}

// emulator finds how RUN can run programs for p: "" when natively, else a
// note naming the binfmt_misc handler that will. No handler, or one
// without the fix-binary flag (the kernel would look for its interpreter
// inside the step's root, where it is not), is an error that says what to
// register.
func emulator(p v1.Platform) (string, error) {
	if nativePlatform(p) {
		return "", nil
	}
	plat := plat.Format(p)
	id, ok := elfMachines[p.Architecture]
	if p.OS != "linux" || !ok {
		return "", fmt.Errorf("RUN cannot run programs for %s on this %s/%s machine", plat, runtime.GOOS, runtime.GOARCH)
	}
	status, err := os.ReadFile(filepath.Join(binfmtDir, "status"))
	if err != nil {
		return "", fmt.Errorf("this %s machine cannot run programs for %s: binfmt_misc is not mounted at %s; %s",
			runtime.GOARCH, plat, binfmtDir, foreignRunHint(p))
	}
	if strings.TrimSpace(string(status)) != "enabled" {
		return "", fmt.Errorf("this %s machine cannot run programs for %s: binfmt_misc is disabled (%s/status); %s",
			runtime.GOARCH, plat, binfmtDir, foreignRunHint(p))
	}
	entries, err := os.ReadDir(binfmtDir)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", binfmtDir, err)
	}
	hdr := id.header()
	var noFix *binfmtHandler
	for _, e := range entries {
		if e.Name() == "status" || e.Name() == "register" {
			continue
		}
		h, err := readBinfmtHandler(filepath.Join(binfmtDir, e.Name()))
		if err != nil || !h.enabled || !h.matches(hdr) {
			continue
		}
		if !strings.Contains(h.flags, "F") {
			noFix = h
			continue
		}
		return fmt.Sprintf("RUN for %s runs through binfmt_misc handler %s (%s)", plat, h.name, h.interpreter), nil
	}
	if noFix != nil {
		return "", fmt.Errorf("this %s machine cannot run programs for %s in a build: its binfmt_misc handler %s (%s) lacks the fix-binary flag (F), so the kernel looks for the interpreter inside the image; register it again with flags F (e.g. with qemu-user-static's fix_binary yes)",
			runtime.GOARCH, plat, noFix.name, noFix.interpreter)
	}
	return "", fmt.Errorf("this %s machine cannot run programs for %s: no binfmt_misc handler for them; %s",
		runtime.GOARCH, plat, foreignRunHint(p))
}

// canRun checks, once per platform and build, that RUN can run programs for
// p, and notes the emulator that will.
func (b *builder) canRun(p v1.Platform) error {
	key := plat.Format(p)
	b.emuMu.Lock()
	defer b.emuMu.Unlock()
	if err, seen := b.emulators[key]; seen {
		return err
	}
	if b.emulators == nil {
		b.emulators = map[string]error{}
	}
	note, err := emulator(p)
	b.emulators[key] = err
	if note != "" {
		b.opts.Progress.Notef("", "note: %s", note)
	}
	return err
}

// checkRunPlatforms fails before any work when a stage with RUN is for a
// platform known from the Dockerfile and --platform (FROM --platform, or
// the target when one was asked for) whose programs this machine cannot
// run. Stages whose platform comes from their base image are checked when
// their RUN comes.
func (b *builder) checkRunPlatforms(plan *dockerfile.Plan, target v1.Platform) error {
	explicit := len(b.opts.Platforms) > 0
	for _, st := range plan.Order {
		var line []parser.Range
		for _, c := range st.Commands {
			if r, ok := c.(*instructions.RunCommand); ok {
				line = r.Location()
				break
			}
		}
		if line == nil {
			continue
		}
		root := st
		for root.BaseStage != nil && root.Platform == "" {
			root = root.BaseStage
		}
		p := target
		switch {
		case root.Platform != "":
			pp, err := plat.Parse(root.Platform)
			if err != nil {
				continue // initBase reports it, with its line
			}
			p = plat.Normalize(*pp)
		case !explicit:
			continue
		}
		if err := b.canRun(p); err != nil {
			return plan.File.Errorf(line, "RUN: %v", err)
		}
	}
	return nil
}
