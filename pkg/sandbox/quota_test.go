package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestRunDiskLimit: in every mode, on overlay and on a working copy, a
// step that goes on writing past the disk limit is stopped while it runs
// (its last line never prints) and Run returns a DiskError naming the
// limit; the same step under a larger limit passes. Not parallel: the
// limit is the process's.
func TestRunDiskLimit(t *testing.T) {
	defer sandbox.SetDiskLimit(sandbox.DiskLimit())
	for _, m := range sandbox.Modes() {
		if m == sandbox.ModeNone {
			continue
		}
		for _, noOverlay := range []bool{false, true} {
			sb, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: m, NoOverlay: noOverlay})
			if err != nil || (noOverlay && !sb.Features().Mounts) {
				continue // each mode's roots once: overlay, working copy
			}
			name := string(m) + "/overlay"
			if !sb.Overlay() {
				name = string(m) + "/workcopy"
			}
			t.Run(name, func(t *testing.T) {
				fx := newFixture(t, sb)
				script := "i=0; while [ $i -lt 12 ]; do dd if=/dev/zero of=/q$i bs=1M count=4 2>/dev/null || exit 9; i=$((i+1)); done; sleep 20; echo end-$((1+1))"
				sandbox.SetDiskLimit(16 << 20)
				step := sandbox.Step{Args: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/bin"}}
				fx.prepare(t, &step)
				var out bytes.Buffer
				step.Stdout, step.Stderr = &out, &out
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				res, err := sb.Run(ctx, step)
				var de *sandbox.DiskError
				if !errors.As(err, &de) || de.Limit != 16<<20 || de.Wrote <= 16<<20 {
					t.Fatalf("Run = %+v, %v; want a DiskError of the 16 MiB limit\n%s", res, err, out.String())
				}
				if strings.Contains(out.String(), "end-2") {
					t.Errorf("the step ran to its end:\n%s", out.String())
				}
				if !strings.Contains(err.Error(), "the step wrote more than 16MiB (--disk-limit)") {
					t.Errorf("error %q", err)
				}
				sandbox.SetDiskLimit(1 << 30)
				got, res2 := fx.run(t, sandbox.Step{}, "dd if=/dev/zero of=/q bs=1M count=8 2>&1 && echo fine")
				if res2.ExitCode != 0 || !strings.Contains(got, "fine") {
					t.Errorf("a step under the limit: exit %d\n%s", res2.ExitCode, got)
				}
			})
		}
	}
}

func TestParseReserve(t *testing.T) {
	for in, want := range map[string]sandbox.Reserve{
		"": sandbox.DefaultReserve, "auto": sandbox.DefaultReserve, "0": {}, "10%": {Percent: 10},
		"2g": {Bytes: 2 << 30}, "512MiB": {Bytes: 512 << 20}, "1048576": {Bytes: 1 << 20},
	} {
		got, err := sandbox.ParseReserve(in)
		if err != nil || got != want {
			t.Errorf("ParseReserve(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "100%", "-1%", "-5g", "5q"} {
		if _, err := sandbox.ParseReserve(bad); err == nil || !strings.Contains(err.Error(), "--disk-reserve") {
			t.Errorf("ParseReserve(%q) = %v, want an error naming --disk-reserve", bad, err)
		}
	}
	// min(5%, 2 GiB): 5% of 10 GiB, 2 GiB of 1 TiB.
	if got := sandbox.DefaultReserve.For(10 << 30); got != 512<<20 {
		t.Errorf("reserve of 10 GiB = %d", got)
	}
	if got := sandbox.DefaultReserve.For(1 << 40); got != 2<<30 {
		t.Errorf("reserve of 1 TiB = %d", got)
	}
}
