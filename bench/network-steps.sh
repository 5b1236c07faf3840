#!/bin/bash
# Cost of a RUN step's network namespace: 20 `RUN echo N` steps on busybox,
# built uncached with --network host and with the default network (its own
# namespace through slirp4netns where it can be had), ROUNDS times each,
# alternating; prints the median step wall time ("RUN done in") of each and
# the difference.
#
# Usage: bench/network-steps.sh   (as the user whose isolation to measure)
# Env:   REGISTRY  registry holding library/busybox:latest (127.0.0.1:5000,
#                  brought up with ../shared/testenv)
#        ROUNDS    builds of each kind (default 5)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
REGISTRY=${REGISTRY:-127.0.0.1:5000}
ROUNDS=${ROUNDS:-5}
curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" || {
  echo "network-steps.sh: no registry at $REGISTRY (../shared/testenv/registry-up)" >&2
  exit 1
}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-net-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/kiln" ./cmd/kiln)
mkdir "$work/ctx"
{
  echo "FROM $REGISTRY/library/busybox:latest"
  for i in $(seq 1 20); do echo "RUN echo $i"; done
} >"$work/ctx/Dockerfile"
for r in $(seq 1 "$ROUNDS"); do
  for net in host default; do
    rm -rf "$work/store"
    "$work/kiln" --root "$work/store" build --no-cache --network "$net" "$work/ctx" >"$work/log.$net.$r" 2>&1
  done
done
median() { grep -ho 'RUN done in [0-9.]*ms' "$@" | awk '{print $4 + 0}' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
h=$(median "$work"/log.host.*)
d=$(median "$work"/log.default.*)
printf '| network | median RUN step (ms) |\n| --- | --- |\n| host | %s |\n| default | %s |\n| difference | %s |\n' \
  "$h" "$d" "$(awk -v a="$d" -v b="$h" 'BEGIN {printf "%+.1f", a - b}')"
