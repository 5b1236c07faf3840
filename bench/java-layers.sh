#!/bin/bash
# Benchmark kiln on the java-layers workload (Debian base from a registry,
# WORKDIR, 5 COPY layers of a Spring Boot layered jar, no RUN) against the
# floor of such a build, and print a table with the targets:
#
#   kiln wall      `kiln build` of java-layers into a fresh --root (cold)
#   rebuild wall   the same build again in that --root, nothing changed
#                  (every layer from the store's cache; the context only
#                  stat'ed)                                    <= 0.06 s
#   floor wall     the floor as issue 2 defines it: `tar -c` of the same
#                  context piped through the same compression (bench/cmd/
#                  compress: pkg/archive.Compress, kiln's fixed gzip
#                  settings) and sha256 (`openssl dgst -sha256`, which uses
#                  the CPU's SHA instructions; coreutils' sha256sum does
#                  not and would make the floor twice as slow), in one
#                  pipeline                                    ratio <= 1.3
#   in-process     bench/cmd/floor, a stricter reference: the 5 COPY
#   floor          sources written as 5 gzip layers with pkg/archive.
#                  WriteLayer to /dev/null in one process, diff IDs and
#                  digests computed in the same pass (no pipes, no disk)
#   kiln peak RSS  maximum resident set size of the build     < 150 MB
#   base bytes     bytes of the base image's layers that a cold build
#                  downloads (through a counting proxy)       0
#   tar|gzip       `tar -c build | gzip -6 | sha256sum`, for reference
#
# Usage: bench/java-layers.sh        (from anywhere; run as root or not)
# Env:
#   REPS       repetitions of each timed command; medians are shown (3)
#   REGISTRY   host:port of a registry to use; default: start a private
#              docker-registry on a free port, stopped at exit
#   BENCH_OUT  where results (TSV), logs and the table go
#              (default bench/out/java-layers-<UTC time>)
#   KEEP=1     keep the temporary stores and binaries
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
REPS=${REPS:-3}
RUN_ID=$(date -u +%Y%m%dT%H%M%S)
BENCH_OUT=${BENCH_OUT:-$repo/bench/out/java-layers-$RUN_ID}
WL=$repo/testdata/workloads/java-layers
TAG=bench/java-layers:latest

BENCH_NAME=java-layers.sh
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

# ---- measurement -------------------------------------------------------------
results=$BENCH_OUT/results.tsv
printf 'what\trep\twall_s\tmaxrss_kb\trc\n' >"$results"

# measure WHAT REP -- CMD... : run CMD under /usr/bin/time -v; append a row.
measure() {
  local what=$1 rep=$2 tf t0 t1 rc=0 rss wall
  shift 3
  tf=$(mktemp)
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$tf" "$@" >>"$BENCH_OUT/$what.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  cat "$tf" >>"$BENCH_OUT/$what.log"
  rm -f "$tf"
  printf '%s\t%s\t%s\t%s\t%s\n' "$what" "$rep" "$wall" "${rss:-0}" "$rc" >>"$results"
  printf '  %-10s rep %s: %8ss  rss %6s MiB  rc %s\n' "$what" "$rep" "$wall" "$(( ${rss:-0} / 1024 ))" "$rc" >&2
  [ "$rc" -eq 0 ] || { tail -n 30 "$BENCH_OUT/$what.log" >&2; die "$what failed (rc $rc); log: $BENCH_OUT/$what.log"; }
}

sources=(build/libs/dependencies build/libs/spring-boot-loader build/libs/libs-dependencies
  build/libs/application build/VERSION)

say "timing (REPS=$REPS)"
for rep in $(seq "$REPS"); do
  measure kiln "$rep" -- "$bin/kiln" --root "$work/root-$rep" build \
    --build-arg "REGISTRY=$REGISTRY" --build-arg PIPELINE_ID_ARG=123 -t "$TAG" "$WL"
  measure rebuild "$rep" -- "$bin/kiln" --root "$work/root-$rep" build \
    --build-arg "REGISTRY=$REGISTRY" --build-arg PIPELINE_ID_ARG=123 -t "$TAG" "$WL"
  rm -rf "$work/root-$rep"
  measure floor "$rep" -- bash -o pipefail -c 'tar -cf - -C "$1" . | "$2" | openssl dgst -sha256' _ "$WL" "$bin/compress"
  measure inproc "$rep" -- bash -c 'cd "$1" && shift && exec "$@"' _ "$WL" "$bin/floor" "${sources[@]}"
  measure tar-gzip "$rep" -- bash -c 'tar -C "$1" -cf - build | gzip -6 | sha256sum' _ "$WL"
done

say "counting base-layer bytes through a proxy: cold, second build, fresh store with --cache-from"
# counted ROOT ARGS... : one build through a fresh counting proxy; prints
# the base-layer bytes it fetched. The first (cold) build pushes its step
# cache and path indexes (--cache-to); a second build in the same store
# finds the index there; a fresh store finds it with --cache-from.
counted() {
  local root=$1 proxy proxy_pid n=0 d
  shift
  rm -f "$work/proxy.addr" "$work/counts.json"
  "$bin/countproxy" -target "$REGISTRY" -addr-file "$work/proxy.addr" -out "$work/counts.json" >/dev/null &
  proxy_pid=$!
  for _ in $(seq 100); do [ -s "$work/proxy.addr" ] && break; sleep 0.1; done
  [ -s "$work/proxy.addr" ] || die "countproxy did not start"
  proxy=$(cat "$work/proxy.addr")
  "$bin/kiln" --root "$root" build --build-arg "REGISTRY=$proxy" --build-arg PIPELINE_ID_ARG=123 \
    -t "$TAG" "${@/PROXY/$proxy}" "$WL" >>"$BENCH_OUT/kiln-proxy.log" 2>&1 ||
    { kill "$proxy_pid"; tail "$BENCH_OUT/kiln-proxy.log" >&2; die "kiln build through the proxy failed"; }
  kill -TERM "$proxy_pid"
  wait "$proxy_pid" 2>/dev/null || true
  for d in "${base_layers[@]}"; do
    n=$((n + $(jq -r --arg d "$d" '.blobs[$d] // 0' "$work/counts.json")))
  done
  echo "$n"
}
base_bytes=$(counted "$work/root-proxy" --cache-to PROXY/bench/cache)
second_bytes=$(counted "$work/root-proxy")
fresh_from_bytes=$(counted "$work/root-proxy-fresh" --cache-from PROXY/bench/cache)

# ---- report ------------------------------------------------------------------
median() { # WHAT COLUMN
  awk -F'\t' -v w="$1" -v c="$2" 'NR > 1 && $1 == w {print $c}' "$results" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
maxof() { awk -F'\t' -v w="$1" -v c="$2" 'NR > 1 && $1 == w && $c > m {m = $c} END {print m + 0}' "$results"; }
kiln_wall=$(median kiln 3)
rebuild_wall=$(median rebuild 3)
floor_wall=$(median floor 3)
inproc_wall=$(median inproc 3)
tar_wall=$(median tar-gzip 3)
kiln_rss_mb=$(awk -v k="$(maxof kiln 4)" 'BEGIN {printf "%.0f", k * 1024 / 1e6}')
ratio=$(awk -v a="$kiln_wall" -v b="$floor_wall" 'BEGIN {printf "%.2f", a / b}')
inproc_ratio=$(awk -v a="$kiln_wall" -v b="$inproc_wall" 'BEGIN {printf "%.2f", a / b}')
verdict() { if [ "$1" = 1 ]; then echo ok; else echo MISSED; fi; }
table=$BENCH_OUT/table.md
{
  echo "java-layers, REPS=$REPS, medians; $(nproc) CPUs; registry $REGISTRY; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "| metric | value | target | |"
  echo "|---|---|---|---|"
  echo "| kiln cold build wall | ${kiln_wall} s | | |"
  echo "| kiln no-change rebuild wall (same store) | ${rebuild_wall} s | <= 0.06 s | $(verdict "$(awk -v r="$rebuild_wall" 'BEGIN {print (r <= 0.06)}')") |"
  echo "| floor wall (tar -c context \| compress \| openssl sha256) | ${floor_wall} s | | |"
  echo "| ratio kiln / floor | ${ratio} | <= 1.3 | $(verdict "$(awk -v r="$ratio" 'BEGIN {print (r <= 1.3)}')") |"
  echo "| in-process floor wall (WriteLayer gzip, 5 layers, no disk) | ${inproc_wall} s | | |"
  echo "| ratio kiln / in-process floor (stricter reference) | ${inproc_ratio} | | |"
  echo "| kiln peak RSS (max of reps) | ${kiln_rss_mb} MB | < 150 MB | $(verdict "$(awk -v m="$kiln_rss_mb" 'BEGIN {print (m < 150)}')") |"
  echo "| base layer bytes fetched, cold build (fresh store: each layer once, for its path index) | ${base_bytes} | | |"
  echo "| base layer bytes fetched, second build (index in the store) | ${second_bytes} | 0 | $(verdict "$([ "$second_bytes" -eq 0 ] && echo 1)") |"
  echo "| base layer bytes fetched, fresh store with --cache-from | ${fresh_from_bytes} | 0 | $(verdict "$([ "$fresh_from_bytes" -eq 0 ] && echo 1)") |"
  echo "| tar -c \| gzip -6 \| sha256sum (reference) | ${tar_wall} s | | |"
} >"$table"
cat "$table"
say "results: $BENCH_OUT"
