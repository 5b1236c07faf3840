#!/bin/bash
# Benchmark a CI pipeline on java-layers run twice, each time in a new pod
# (an empty kiln store) on a fresh checkout (every context file gets a new
# mtime), as GitLab or Jenkins jobs on Kubernetes run it:
#
#   kiln build --cache-from R/cache --cache-to R/cache -t R/app:N --push CTX
#
# against the same pipeline without the registry step cache. Prints, for
# each run: wall time of build + push, and how many layers were uploaded
# (and their bytes), mounted or skipped.
#
#   first      cold: nothing cached anywhere (fills the cache repository)
#   cached     second pipeline with --cache-from/--cache-to: the COPY layers
#              come from the cache repository by content key, so nothing is
#              compressed, written or uploaded again
#   uncached   second pipeline without the cache: every COPY layer is
#              written again with the new mtimes, so every one is uploaded
#
# Usage: bench/java-layers-pipeline.sh    Env: REPS (3), REGISTRY, BENCH_OUT, KEEP
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
REPS=${REPS:-3}
RUN_ID=$(date -u +%Y%m%dT%H%M%S)
BENCH_OUT=${BENCH_OUT:-$repo/bench/out/java-layers-pipeline-$RUN_ID}
WL=$repo/testdata/workloads/java-layers

BENCH_NAME=java-layers-pipeline.sh
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

results=$BENCH_OUT/results.tsv
printf 'what\trep\twall_s\tpushed\tpushed_bytes\tmounted\tskipped\tcached\n' >"$results"

# pipeline WHAT REP ARGS...: a new store, a fresh checkout, build --push.
pipeline() {
  local what=$1 rep=$2 root log t0 t1 wall pushed bytes mounted skipped cached d
  shift 2
  root=$(mktemp -d "$work/root.XXXXXX")
  log=$BENCH_OUT/$what-$rep.log
  find "$WL/build" -exec touch {} +
  sync
  t0=$(date +%s.%N)
  "$bin/kiln" --root "$root" --progress plain build --build-arg "REGISTRY=$REGISTRY" \
    -t "$REGISTRY/app/java:$what-$rep" --push "$@" "$WL" >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "$what failed; log: $log"; }
  t1=$(date +%s.%N)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  pushed=$(grep -c ': Pushed$' "$log" || true)
  mounted=$(grep -c ': Mounted from' "$log" || true)
  skipped=$(grep -c ': Layer already exists$' "$log" || true)
  cached=$(grep -c '\] CACHED ' "$log" || true)
  # Bytes uploaded: sizes of the layers the push reported as Pushed.
  bytes=0
  while read -r short; do
    d=$(jq -r --arg s "$short" '.layers[] | select(.digest | startswith("sha256:" + $s)) | .size' "$work/manifest.json" 2>/dev/null | head -1)
    bytes=$((bytes + ${d:-0}))
  done < <(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY/v2/app/java/manifests/$what-$rep" -o "$work/manifest.json" &&
    sed -n 's/^\([0-9a-f]\{12\}\): Pushed$/\1/p' "$log")
  rm -rf "$root"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$what" "$rep" "$wall" "$pushed" "$bytes" "$mounted" "$skipped" "$cached" >>"$results"
  printf '  %-9s rep %s: %7ss  pushed %s (%s B)  mounted %s  skipped %s  cached %s\n' "$what" "$rep" "$wall" "$pushed" "$bytes" "$mounted" "$skipped" "$cached" >&2
}

say "timing (REPS=$REPS)"
for rep in $(seq "$REPS"); do
  cache=$REGISTRY/cache/java-$rep
  pipeline first "$rep" --cache-to "$cache"
  pipeline cached "$rep" --cache-from "$cache" --cache-to "$cache"
  pipeline uncached "$rep"
done

median() { # WHAT COLUMN
  awk -F'\t' -v w="$1" -v c="$2" 'NR > 1 && $1 == w {print $c}' "$results" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
table=$BENCH_OUT/table.md
{
  echo "java-layers pipeline (new store, fresh checkout, build --push), REPS=$REPS, medians; $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "| run | wall | layers uploaded | bytes uploaded | mounted | already there | steps from the cache |"
  echo "|---|---|---|---|---|---|---|"
  for w in first cached uncached; do
    echo "| $w | $(median $w 3) s | $(median $w 4) | $(median $w 5) | $(median $w 6) | $(median $w 7) | $(median $w 8) |"
  done
} >"$table"
cat "$table"
say "results: $BENCH_OUT"
