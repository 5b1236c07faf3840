#!/bin/bash
# Benchmark RUN steps and print a table with the targets:
#
#   per-RUN overhead   big-base-small-runs' 10 RUNs: step wall time minus
#                      the command's own time (kiln logs both), median of a
#                      warm build (layers already unpacked)        < 100 ms
#   debian-big/debian  that median on the 1 GiB base over the one on
#                      debian                                        <= 1.2
#   second build       layers unpacked by a second build on the
#                      same base                                         0
#   many-files         the 50,000-file RUN: time from the command's exit
#                      to the layer stored (diff, tar, gzip, digest) < 2 s
#   apt-install        cold `kiln build` vs cold `buildah build` (rootless,
#                      overlay storage, chroot isolation), medians
#                                                        kiln <= buildah
#
# and, for ptrace mode (the last resort, as in a "restricted" pod), against
# the detected mode on the same machine:
#
#   ptrace per-RUN     big-base-small-runs on debian, warm, median of 10
#                      step wall times: ptrace minus detected < 150 ms
#                      (with the overhead, wall minus command, and the
#                      command times of both)
#   ptrace apt-install cold apt-install in ptrace mode over the detected
#                      mode, medians of REPS                    <= 2
#
# and inside containers (section "pods", as root only: bench/pods-steps.sh
# starts a private dockerd), the 50,000-file RUN step on the host and in
# containers with a pod's settings, chroot, userns and ptrace mode, the
# store on the container's overlayfs or on a volume:
#
#   in-container       step time in a container over the host's, same
#                      mode family                              <= 2
#
# Usage: bench/run-steps.sh   (as root it runs the builds as BENCH_USER,
#                              default kilnuser: rootless, as asked)
# Env:
#   REPS        repetitions of the apt-install comparison (3)
#   REGISTRY    registry with library/{busybox,debian,debian-big}
#               (default 127.0.0.1:5000, brought up with ../shared/testenv)
#   BENCH_USER  user to run the builds as when started as root ("" = root)
#   BENCH_OUT   where logs and table.md go (default bench/out/run-steps-<UTC>)
#   ISOLATION   --isolation for the main section's builds ("" = detected)
#   SECTIONS    what to measure: "main ptrace pods" (default); "ptrace"
#               needs only library/debian in the registry, "pods" no
#               registry (it runs its own) but root
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
REPS=${REPS:-3}
REGISTRY=${REGISTRY:-127.0.0.1:5000}
ISOLATION=${ISOLATION:-}
SECTIONS=${SECTIONS:-main ptrace pods}
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
RUN_ID=$(date -u +%Y%m%dT%H%M%S)
BENCH_OUT=${BENCH_OUT:-$repo/bench/out/run-steps-$RUN_ID}
testenv=$(cd "$repo/.." && pwd)/shared/testenv

die() { echo "run-steps.sh: $*" >&2; exit 1; }
say() { echo "run-steps.sh: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  BENCH_USER=${BENCH_USER-kilnuser}
  id "$BENCH_USER" >/dev/null 2>&1 || BENCH_USER=
else
  BENCH_USER=
fi
for p in go jq curl; do command -v "$p" >/dev/null || die "$p not found (sudo .ci/deps)"; done

if (want main || want ptrace) && ! curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/"; then
  [ "$(id -u)" -eq 0 ] && [ -x "$testenv/registry-up" ] || die "no registry at $REGISTRY (run ../shared/testenv/registry-up and base-images as root)"
  "$testenv/registry-up" >/dev/null
fi
images=
want ptrace && images="debian:bookworm"
want main && images="busybox:latest debian:bookworm debian-big:bookworm"
for img in $images; do
  if ! curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/library/${img%%:*}/manifests/${img#*:}"; then
    [ "$(id -u)" -eq 0 ] && [ -x "$testenv/base-images" ] || die "library/$img missing in $REGISTRY (../shared/testenv/base-images)"
    REGISTRY=$REGISTRY "$testenv/base-images" >/dev/null
    break
  fi
done

mkdir -p "$BENCH_OUT"
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-run-bench.XXXXXX")
chmod 755 "$work"
cleanup() {
  # Unpacked layers may belong to subordinate ids: remove from inside.
  if [ -n "$BENCH_USER" ]; then
    su "$BENCH_USER" -s /bin/bash -c "buildah unshare rm -rf '$work'/u 2>/dev/null" || true
  elif [ "$(id -u)" -ne 0 ] && command -v buildah >/dev/null; then
    buildah unshare rm -rf "$work"/u 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/u" && chmod 777 "$work/u"

say "building kiln"
(cd "$repo" && go build -o "$work/kiln" ./cmd/kiln) || die "go build failed"
chmod 755 "$work/kiln"
as_user() { # CMD... as BENCH_USER (or ourselves)
  if [ -n "$BENCH_USER" ]; then
    su "$BENCH_USER" -s /bin/bash -c "cd '$work/u' && $(printf '%q ' "$@")"
  else
    (cd "$work/u" && "$@")
  fi
}
kiln() {
  if [ -n "$ISOLATION" ]; then as_user "$work/kiln" --isolation "$ISOLATION" "$@"; else as_user "$work/kiln" "$@"; fi
}
kiln_in() { # MODE ARGS...: kiln with --isolation MODE ("" = detected)
  local m=$1
  shift
  if [ -n "$m" ]; then as_user "$work/kiln" --isolation "$m" "$@"; else as_user "$work/kiln" "$@"; fi
}

# A workload copied where BENCH_USER can read it, its base swapped.
ctx() { # NAME BASE -> prints the context dir
  local d=$work/u/ctx-$1-$2
  mkdir -p "$d"
  sed "s#library/debian-big:bookworm#library/$2:bookworm#" "$repo/testdata/workloads/$1/Dockerfile" >"$d/Dockerfile"
  chmod -R a+rX "$d"
  echo "$d"
}

# medians of "RUN done in Xms (command Yms)" lines: overhead X-Y.
overheads() { sed -n 's/.*RUN done in \([0-9.]*\)ms (command \([0-9.]*\)ms.*/\1 \2/p' "$1" | awk '{printf "%.1f\n", $1-$2}'; }
commands() { sed -n 's/.*RUN done in [0-9.]*ms (command \([0-9.]*\)ms.*/\1/p' "$1"; }
walls() { sed -n 's/.*RUN done in \([0-9.]*\)ms (command.*/\1/p' "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

mode=$(kiln doctor | sed -n 's/^isolation: //p')
say "isolation: $mode (as ${BENCH_USER:-$(id -un)})"
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { if (v == "nan") { print "n/a"; exit } ok = (op == "<" ? v < t : (op == "<=" ? v <= t : v == t)); print (ok ? "ok" : "MISSED") }'; }
: >"$BENCH_OUT/table.md"

if want main; then

declare -A med cold unpacked
for base in debian debian-big; do
  c=$(ctx big-base-small-runs "$base")
  store=$work/u/store-$base
  say "big-base-small-runs on $base: cold build"
  kiln --root "$store" build --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/small-runs-$base-cold.log" 2>&1
  cold[$base]=$(overheads "$BENCH_OUT/small-runs-$base-cold.log" | tail -n +2 | median)
  say "big-base-small-runs on $base: warm build"
  # --no-cache: the steps run again (else the step cache answers them and
  # no RUN time is logged), on the layers the cold build unpacked.
  kiln --root "$store" build --no-cache --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/small-runs-$base-warm.log" 2>&1
  med[$base]=$(overheads "$BENCH_OUT/small-runs-$base-warm.log" | median)
  unpacked[$base]=$(grep -c 'unpacked' "$BENCH_OUT/small-runs-$base-warm.log" || true)
done
ratio=$(awk -v a="${med[debian-big]}" -v b="${med[debian]}" 'BEGIN {printf "%.2f", a/b}')
unpack_time=$(sed -n 's/.*unpacked \([0-9]*\) layer(s) in \(.*\)$/\1 layers in \2/p' "$BENCH_OUT/small-runs-debian-big-cold.log")

say "many-files"
c=$work/u/ctx-many-files
mkdir -p "$c" && cp "$repo/testdata/workloads/many-files/Dockerfile" "$c/" && chmod -R a+rX "$c"
kiln --root "$work/u/store-many" build --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/many-files.log" 2>&1
many=$(sed -n 's/.*RUN done in .*, diff and layer \([0-9.]*\)ms.*/\1/p' "$BENCH_OUT/many-files.log" | head -1)
many_total=$(overheads "$BENCH_OUT/many-files.log" | head -1)

say "apt-install: kiln vs buildah, $REPS reps each, cold"
c=$work/u/ctx-apt
mkdir -p "$c" && cp "$repo/testdata/workloads/apt-install/Dockerfile" "$c/" && chmod -R a+rX "$c"
kt=() bt=()
have_buildah=0
command -v buildah >/dev/null && have_buildah=1
for i in $(seq 1 "$REPS"); do
  s=$(date +%s.%N)
  kiln --root "$work/u/store-apt-$i" build --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/apt-kiln-$i.log" 2>&1 || die "kiln apt-install failed (see $BENCH_OUT/apt-kiln-$i.log)"
  kt+=("$(echo "$(date +%s.%N) - $s" | bc)")
  if [ $have_buildah = 1 ]; then
    s=$(date +%s.%N)
    as_user buildah --root "$work/u/bh-$i" --runroot "$work/u/bhr-$i" --storage-driver overlay build --isolation chroot \
      --tls-verify=false --layers=false --build-arg "REGISTRY=$REGISTRY" -t "bench-apt-$i" "$c" >"$BENCH_OUT/apt-buildah-$i.log" 2>&1 ||
      die "buildah apt-install failed (see $BENCH_OUT/apt-buildah-$i.log)"
    bt+=("$(echo "$(date +%s.%N) - $s" | bc)")
  fi
done
kmed=$(printf '%s\n' "${kt[@]}" | median)
bmed=nan
[ $have_buildah = 1 ] && bmed=$(printf '%s\n' "${bt[@]}" | median)

{
  echo "# RUN benchmarks ($RUN_ID, isolation: $mode, user ${BENCH_USER:-$(id -un)}, $(nproc) cores)"
  echo
  echo "| measure | value | target | |"
  echo "|---|---|---|---|"
  echo "| per-RUN overhead, debian, warm (median of 10) | ${med[debian]} ms | < 100 ms | $(verdict "${med[debian]}" 100 '<') |"
  echo "| per-RUN overhead, debian-big, warm (median of 10) | ${med[debian-big]} ms | < 100 ms | $(verdict "${med[debian-big]}" 100 '<') |"
  echo "| per-RUN overhead, cold builds, steps 2-10 (debian / debian-big) | ${cold[debian]} / ${cold[debian-big]} ms | | |"
  echo "| debian-big / debian | $ratio | <= 1.2 | $(verdict "$ratio" 1.2 '<=') |"
  echo "| layers unpacked by the second build (debian / debian-big) | ${unpacked[debian]} / ${unpacked[debian-big]} | 0 | $(verdict "$((unpacked[debian] + unpacked[debian-big]))" 0 '==') |"
  echo "| first build's unpack of debian-big | $unpack_time | once per machine | |"
  echo "| many-files: diff + layer of 50,000 files (snapshot and layer) | $many ms | < 2000 ms | $(verdict "$many" 2000 '<') |"
  echo "| many-files: whole step minus the command | $many_total ms | | |"
  echo "| apt-install, cold, kiln (median of $REPS) | $kmed s | <= buildah | |"
  echo "| apt-install, cold, buildah overlay+chroot (median of $REPS) | $bmed s | | $(verdict "$kmed" "$bmed" '<=') |"
} | tee -a "$BENCH_OUT/table.md"
fi

# ptrace mode against the detected mode (the detected one first, then
# ptrace, alternating, so that load on the machine hits both alike). The
# warm build is --no-cache: its steps run, on layers already unpacked.
# REPS=0 leaves out apt-install.
if want ptrace; then
  detected=$(as_user "$work/kiln" doctor | sed -n 's/^isolation: \([a-z]*\).*/\1/p')
  c=$(ctx big-base-small-runs debian)
  declare -A pr_over pr_cmd pr_wall
  for m in "$detected" ptrace; do
    store=$work/u/store-small-$m
    say "big-base-small-runs on debian in $m mode: cold and warm builds"
    kiln_in "$m" --root "$store" build --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/ptrace-small-$m-cold.log" 2>&1 ||
      die "big-base-small-runs in $m mode failed (see $BENCH_OUT/ptrace-small-$m-cold.log)"
    kiln_in "$m" --root "$store" build --no-cache --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/ptrace-small-$m-warm.log" 2>&1 ||
      die "big-base-small-runs in $m mode failed (see $BENCH_OUT/ptrace-small-$m-warm.log)"
    pr_over[$m]=$(overheads "$BENCH_OUT/ptrace-small-$m-warm.log" | median)
    pr_cmd[$m]=$(commands "$BENCH_OUT/ptrace-small-$m-warm.log" | median)
    pr_wall[$m]=$(walls "$BENCH_OUT/ptrace-small-$m-warm.log" | median)
  done
  cmd_delta=$(awk -v a="${pr_cmd[ptrace]}" -v b="${pr_cmd[$detected]}" 'BEGIN {printf "%+.1f", a-b}')
  added=$(awk -v a="${pr_wall[ptrace]}" -v b="${pr_wall[$detected]}" 'BEGIN {printf "%+.1f", a-b}')

  amed_d=nan amed_p=nan aratio=nan
  if [ "$REPS" -gt 0 ]; then
    say "apt-install: ptrace vs $detected mode, $REPS reps each, cold"
    c=$work/u/ctx-apt
    mkdir -p "$c" && cp "$repo/testdata/workloads/apt-install/Dockerfile" "$c/" && chmod -R a+rX "$c"
    declare -A at
    for i in $(seq 1 "$REPS"); do
      for m in "$detected" ptrace; do
        s=$(date +%s.%N)
        kiln_in "$m" --root "$work/u/store-apt-$m-$i" build --build-arg "REGISTRY=$REGISTRY" "$c" >"$BENCH_OUT/apt-$m-$i.log" 2>&1 ||
          die "apt-install in $m mode failed (see $BENCH_OUT/apt-$m-$i.log)"
        at[$m]+="$(echo "$(date +%s.%N) - $s" | bc) "
      done
    done
    amed_d=$(printf "%s\n" ${at[$detected]} | median)
    amed_p=$(printf "%s\n" ${at[ptrace]} | median)
    aratio=$(awk -v a="$amed_p" -v b="$amed_d" 'BEGIN {printf "%.2f", a/b}')
  fi
  {
    echo
    echo "## ptrace mode against $detected mode ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "| measure | $detected | ptrace | target | |"
    echo "|---|---|---|---|---|"
    echo "| step wall time, debian, warm (median of 10) | ${pr_wall[$detected]} ms | ${pr_wall[ptrace]} ms ($added) | ptrace adds < 150 ms | $(verdict "$added" 150 '<') |"
    echo "| per-RUN overhead (wall minus command) | ${pr_over[$detected]} ms | ${pr_over[ptrace]} ms | | |"
    echo "| command time of \`echo N > /stepN\` (median of 10) | ${pr_cmd[$detected]} ms | ${pr_cmd[ptrace]} ms ($cmd_delta) | | |"
    echo "| apt-install, cold (median of $REPS) | $amed_d s | $amed_p s ($aratio x) | <= 2 x | $(verdict "$aratio" 2 '<=') |"
  } | tee -a "$BENCH_OUT/table.md"
fi

# The 50,000-file RUN step on the host and inside containers with pods'
# settings (bench/pods-steps.sh: its own dockerd and registry, so root).
if want pods; then
  if [ "$(id -u)" -ne 0 ]; then
    say "pods: skipped (it starts a private dockerd: run as root)"
  else
    say "pods: the 50,000-file step on the host and in containers, $REPS builds per cell"
    BENCH_OUT=$BENCH_OUT/pods REPS=$REPS "$here/pods-steps.sh" >"$BENCH_OUT/pods.log" 2>&1 ||
      die "pods-steps.sh failed (see $BENCH_OUT/pods.log)"
    {
      echo
      echo "## the 50,000-file RUN step inside containers ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
      echo
      echo "Target: in-container chroot and userns cells within 2x of the host (x host-overlay <= 2)."
      echo
      cat "$BENCH_OUT/pods/table.md"
    } | tee -a "$BENCH_OUT/table.md"
  fi
fi
