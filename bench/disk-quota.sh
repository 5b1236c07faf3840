#!/bin/bash
# Cost of the disk quota's watcher on the 50,000-file RUN step
# (testdata/workloads/many-files): the step built uncached with no
# --disk-limit (only the default reserve: fstatfs every 100 ms), with
# --disk-limit 10g (walks of the step's tree) and, when BEFORE is set, with
# that kiln binary (before the quota), ROUNDS times each in a shuffled
# order; prints the medians of the step's wall time, its command's, the
# diff's, and the CPU time (user + system) of the whole kiln process tree,
# which a loaded machine disturbs far less than wall times.
#
# Usage: bench/disk-quota.sh   (as the user whose isolation to measure)
# Env:   REGISTRY   registry holding library/busybox:latest (127.0.0.1:5000,
#                   brought up with ../shared/testenv)
#        ROUNDS     builds of each kind (default 5)
#        ISOLATION  --isolation (default: detected)
#        BEFORE     a kiln binary to compare with (default: none)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
REGISTRY=${REGISTRY:-127.0.0.1:5000}
ROUNDS=${ROUNDS:-5}
ISOLATION=${ISOLATION:-auto}
BEFORE=${BEFORE:-}
curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" || {
  echo "disk-quota.sh: no registry at $REGISTRY (../shared/testenv/registry-up)" >&2
  exit 1
}
command -v /usr/bin/time >/dev/null || { echo "disk-quota.sh: /usr/bin/time missing (Debian's time)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-disk-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/kiln" ./cmd/kiln)
mkdir "$work/ctx"
cp "$repo/testdata/workloads/many-files/Dockerfile" "$work/ctx/"
kinds="none limit"
[ -n "$BEFORE" ] && kinds="before $kinds"
for r in $(seq 1 "$ROUNDS"); do
  for kind in $(printf '%s\n' $kinds | shuf); do
    bin=$work/kiln extra=()
    case $kind in
      before) bin=$BEFORE ;;
      limit) extra=(--disk-limit 10g) ;;
    esac
    # One store per kind: the base is unpacked by the first round only.
    /usr/bin/time -f 'cpu %U %S' -o "$work/time.$kind.$r" \
      "$bin" --root "$work/store-$kind" --isolation "$ISOLATION" --insecure-registry "$REGISTRY" "${extra[@]}" \
      build --no-cache --build-arg "REGISTRY=$REGISTRY" "$work/ctx" >"$work/log.$kind.$r" 2>&1
  done
done
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
field() { # KIND SED-EXPR: median over the rounds of a number in the logs
  for r in $(seq 1 "$ROUNDS"); do sed -n "$2" "$work/log.$1.$r" | head -1; done | median
}
printf '| kind | RUN step (ms) | command (ms) | diff and layer (ms) | CPU of kiln and the step (s) |\n| --- | --- | --- | --- | --- |\n'
for kind in $kinds; do
  cpu=$(for r in $(seq 1 "$ROUNDS"); do awk '/^cpu/ {print $2 + $3}' "$work/time.$kind.$r"; done | median)
  printf '| %s | %s | %s | %s | %s |\n' "$kind" \
    "$(field "$kind" 's/.*RUN done in \([0-9.]*\)ms.*/\1/p')" \
    "$(field "$kind" 's/.*(command \([0-9.]*\)ms.*/\1/p')" \
    "$(field "$kind" 's/.*diff and layer \([0-9.]*\)ms.*/\1/p')" "$cpu"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
