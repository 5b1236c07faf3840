#!/bin/bash
# The 50,000-file RUN step (testdata/workloads/many-files) on the host and
# inside containers, split as kiln logs it: the command's own time, the diff
# and layer, the rest of the step (working copy or overlay set-up), and the
# whole build (which also holds the clean-up after the step). Cells:
#
#   host-overlay      kiln on the host (root mode, overlay upper dir)
#   host-chroot       kiln on the host, --isolation chroot (working copy)
#   chroot-overlayfs  root in a container, default seccomp: chroot mode,
#                     store on the container's own overlayfs
#   chroot-volume     the same with the store and TMPDIR on a volume
#   userns-overlayfs  root in a container, seccomp unconfined: userns mode,
#                     store on the container's overlayfs (no overlay)
#   userns-volume     the same with the store on a volume (overlay works)
#
# Target: each in-container cell within 2x of the host cell of its kind.
#
# Usage: sudo bench/pods-steps.sh      (root: it starts its own dockerd)
# Env:   REPS       builds per cell (3)
#        BENCH_OUT  where bench.txt and table.md go
#                   (default bench/out/pods-steps-<UTC>)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
REPS=${REPS:-3}
BENCH_OUT=${BENCH_OUT:-$repo/bench/out/pods-steps-$(date -u +%Y%m%dT%H%M%S)}
[ "$(id -u)" -eq 0 ] || { echo "pods-steps.sh: run it as root (it starts a private dockerd)" >&2; exit 1; }
mkdir -p "$BENCH_OUT"
cd "$repo"
go test ./test/pods -run '^$' -bench 'ManyFilesInContainer' -benchtime "${REPS}x" -timeout 60m |
  tee "$BENCH_OUT/bench.txt"
{
  echo "| cell | step ms | command ms | diff and layer ms | rest of step ms | build ms |"
  echo "|---|---|---|---|---|---|"
  awk '/^BenchmarkManyFilesInContainer\// {
    split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); m[""] = 0
    for (i = 3; i < NF; i += 2) m[$(i + 1)] = $i
    printf "| %s | %s | %s | %s | %s | %s |\n", n[2], m["step-ms"], m["command-ms"], m["diff-ms"], m["setup-ms"], m["build-ms"]
  }' "$BENCH_OUT/bench.txt"
} | tee "$BENCH_OUT/table.md"
