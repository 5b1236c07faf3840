#!/bin/bash
# The 50,000-file RUN step (testdata/workloads/many-files) on the host and
# inside containers, split as kiln logs it: the command's own time, the diff
# and layer, the rest of the step (working copy or overlay set-up), and the
# whole build (which also holds the clean-up after the step). Cells:
#
#   host-overlay      kiln on the host (root mode, overlay upper dir)
#   host-chroot       kiln on the host, --isolation chroot (working copy)
#   host-ptrace       kiln on the host, --isolation ptrace (working copy)
#   chroot-overlayfs  root in a container, default seccomp: chroot mode,
#                     store on the container's own overlayfs
#   chroot-volume     the same with the store and TMPDIR on a volume
#   userns-overlayfs  root in a container, seccomp unconfined: userns mode,
#                     store on the container's overlayfs (no overlay)
#   userns-volume     the same with the store on a volume (overlay works)
#   ptrace-volume     uid 1000, all capabilities dropped, no-new-privileges
#                     (Pod Security Standards restricted): ptrace mode,
#                     store on a volume
#
# Target: each in-container cell within 2x of the host cell of its kind
# (chroot and userns against host-chroot and host-overlay, ptrace against
# host-ptrace).
#
# Usage: sudo bench/pods-steps.sh      (root: it starts its own dockerd)
# Env:   REPS       builds per cell (3)
#        CELLS      comma-separated cells to run (default all)
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
KILN_PODS_BENCH_CELLS=${CELLS:-} go test ./test/pods -run '^$' -bench 'ManyFilesInContainer' -benchtime "${REPS}x" -timeout 60m |
  tee "$BENCH_OUT/bench.txt"
# The ratio columns: the cell's step time over host-overlay's (the host
# figure) and over the host cell of its own mode (host-chroot for chroot,
# host-overlay for userns, host-ptrace for ptrace).
{
  echo "| cell | step ms | command ms | diff and layer ms | rest of step ms | build ms | x host-overlay | x host, same mode |"
  echo "|---|---|---|---|---|---|---|---|"
  awk '/^BenchmarkManyFilesInContainer\// {
    split($1, n, "/"); c = n[2]; sub(/-[0-9]+$/, "", c); cells[++k] = c
    for (i = 3; i < NF; i += 2) m[c, $(i + 1)] = $i
  }
  END {
    for (j = 1; j <= k; j++) {
      c = cells[j]; same = "host-overlay"
      if (c ~ /chroot/) same = "host-chroot"
      if (c ~ /ptrace/) same = "host-ptrace"
      r1 = (m["host-overlay", "step-ms"] > 0) ? sprintf("%.2f", m[c, "step-ms"] / m["host-overlay", "step-ms"]) : "n/a"
      r2 = (m[same, "step-ms"] > 0) ? sprintf("%.2f", m[c, "step-ms"] / m[same, "step-ms"]) : "n/a"
      printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c, m[c, "step-ms"], m[c, "command-ms"], m[c, "diff-ms"], m[c, "setup-ms"], m[c, "build-ms"], r1, r2
    }
  }' "$BENCH_OUT/bench.txt"
} | tee "$BENCH_OUT/table.md"
