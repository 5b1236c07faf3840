#!/bin/bash
# compare.sh: kiln against the anchors (buildah, and docker where dockerd
# runs) and against floors it measures itself, on the shared workloads, in
# one run, interleaved (rep 1 of every tool and floor, then rep 2, ...).
# Run as root from the repository (the builds run rootless as BUILD_USER).
#
#   usage: bench/compare.sh [WORKLOAD...]
#          (default: java-layers multi-stage big-base-small-runs apt-install
#          many-files: every row of issue 13's table)
#   env:   REPS (3), ANCHORS ("buildah docker"; "" for none), BUILD_USER
#          (builder if it exists, else kilnuser; needs /etc/subuid),
#          SHARED_BENCH (the shared bench directory: anchors/, workloads/),
#          BENCH_OUT (bench/out/compare-<UTC time>)
#          bench/compare.sh --table BENCH_OUT prints the table of a run so far.
#
# Rows per workload, each measured REPS times (wall seconds, peak RSS):
#   kiln cold-build    kiln build into an empty store, rootless (as kiln.sh)
#   kiln warm-build    the same build again in that store, nothing changed
#                      (the no-change rebuild)
#   kiln unpack / command / diff   the phases kiln logs for the cold build
#   buildah, docker-*  the anchors' cold-build and warm-build rows (their
#                      scripts, REPS=1 per rep; their other scenarios run but
#                      are not shown)
# Floors, on workloads whose base kiln unpacks (big-base-small-runs,
# apt-install, many-files):
#   floor unpack       tar -x of the base image's uncompressed layers into a
#                      fresh directory, as BUILD_USER
#   floor gunzip       pigz -dc (gzip -dc without pigz) of the base image's
#                      compressed layers
#   floor hash         openssl sha256 of the uncompressed layers
#   floor compress     kiln's layer compressor over the uncompressed layers
#   kiln extract       bench/cmd/extract (kiln's extractor alone) of the same
#                      uncompressed layers, as BUILD_USER
#   floor command      many-files: the RUN command with the host's busybox
#                      sh (or sh), in a fresh directory, outside any sandbox
# and on the others:
#   floor stat         java-layers: lstat of every context file (find -printf
#                      of size, mtime, ctime, inode), the floor of a no-change
#                      rebuild
#   floor layers       java-layers: tar -c of the context | kiln's compressor
#                      | openssl sha256, the floor of the cold build's layers
#   floor layer        multi-stage: 20 MiB of /dev/urandom | kiln's compressor
#                      | openssl sha256, the floor of its one layer
# The table (medians, min/max, peak RSS, kiln/anchor ratios for cold and
# warm builds, kiln/floor ratios) and issue 13's targets, met or missed,
# with the load average before and after, go to stdout and
# $BENCH_OUT/table.md, the raw TSV and logs beside it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "compare.sh: $*" >&2; exit 1; }
# table RESULTS.tsv: the markdown table of medians and ratios.
table() {
  awk -F'\t' '
    { k = $2 "\t" $3 "\t" $1; if (!(k in n)) order[++nk] = k
      n[k]++; v[k, n[k]] = $5 + 0; if ($6 + 0 > rss[k]) rss[k] = $6 + 0; if ($7 != 0) fail[k]++ }
    function sortk(key, cnt,   i, j, t) {
      for (i = 1; i <= cnt; i++) s[i] = v[key, i]
      for (i = 2; i <= cnt; i++) { t = s[i]; for (j = i - 1; j >= 1 && s[j] > t; j--) s[j + 1] = s[j]; s[j + 1] = t }
    }
    function med(cnt) { return cnt % 2 ? s[(cnt + 1) / 2] : (s[cnt / 2] + s[cnt / 2 + 1]) / 2 }
    END {
      for (i = 1; i <= nk; i++) { k = order[i]; sortk(k, n[k]); m[k] = med(n[k]); lo[k] = s[1]; hi[k] = s[n[k]] }
      print "| workload | row | tool | n | median s | min s | max s | peak RSS MiB | failed | kiln / this |"
      print "|---|---|---|---|---|---|---|---|---|---|"
      for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, "\t"); w = p[1]
        r = ""
        kb = m[w "\t" p[2] "\tkiln"]
        if (p[3] != "kiln" && (p[2] == "cold-build" || p[2] == "warm-build") && m[k] > 0 && kb > 0) r = sprintf("%.2f", kb / m[k])
        if (p[3] == "floor" && (p[2] == "layers" || p[2] == "layer") && m[k] > 0) {
          kc = m[w "\tcold-build\tkiln"]; if (kc > 0) r = sprintf("%.2f (kiln cold-build)", kc / m[k])
        }
        if (p[3] == "floor" && p[2] == "stat" && m[k] > 0) {
          kw = m[w "\twarm-build\tkiln"]; if (kw > 0) r = sprintf("%.2f (kiln warm-build)", kw / m[k])
        }
        if (p[3] == "floor" && p[2] == "unpack" && m[k] > 0) {
          ku = m[w "\tunpack\tkiln"]; if (ku > 0) r = sprintf("%.2f (kiln unpack)", ku / m[k])
        }
        if (p[3] == "floor" && p[2] == "command" && m[k] > 0) {
          kc = m[w "\tcommand\tkiln"]; if (kc > 0) r = sprintf("%.2f (kiln command)", kc / m[k])
        }
        rs = rss[k] > 0 ? sprintf("%d", rss[k] / 1024) : ""
        printf "| %s | %s | %s | %d | %.2f | %.2f | %.2f | %s | %d | %s |\n", w, p[2], p[3], n[k], m[k], lo[k], hi[k], rs, fail[k], r
      }
      # The targets of issue 13: ratios to the anchor measured in this run.
      print ""
      print "| issue 13 target | measured | met |"
      print "|---|---|---|"
      ratio("big-base-small-runs", "buildah", 0.20)
      ratio("many-files", "docker-buildkit", 0.28)
      ratio("multi-stage", "docker-buildkit", 0.41)
      ratio("apt-install", "docker-buildkit", 0.74)
      k = "java-layers\twarm-build\tkiln"
      if (k in n) printf "| java-layers no-change rebuild <= 0.06 s | %.2f s | %s |\n", m[k], m[k] <= 0.06 ? "yes" : "no"
      else print "| java-layers no-change rebuild <= 0.06 s | not run | |"
      top = 0; at = ""
      for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, "\t")
        if (p[3] == "kiln" && (p[2] == "cold-build" || p[2] == "warm-build") && rss[k] > top) { top = rss[k]; at = p[1] " " p[2] }
      }
      if (top > 0) printf "| kiln peak RSS <= 80 MiB, every workload | %d MiB (%s) | %s |\n", top / 1024, at, top / 1024 <= 80 ? "yes" : "no"
    }
    # ratio W ANCHOR MAX: the row of a cold-build target.
    function ratio(w, a, max,   kk, ka) {
      kk = w "\tcold-build\tkiln"; ka = w "\tcold-build\t" a
      if ((kk in n) && (ka in n) && m[ka] > 0)
        printf "| %s cold build <= %.2fx %s | %.2f s / %.2f s = %.2fx | %s |\n", w, max, a, m[kk], m[ka], m[kk] / m[ka], m[kk] / m[ka] <= max ? "yes" : "no"
      else
        printf "| %s cold build <= %.2fx %s | not run | |\n", w, max, a
    }' "$1"
}

if [ "${1:-}" = --table ]; then # --table DIR: the table of a run (finished or not)
  [ -f "${2:-}/results.tsv" ] || die "usage: compare.sh --table BENCH_OUT"
  echo "$(cat "$2/header.txt") (table of the results so far)"
  echo
  table "$2/results.tsv"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "run as root (builds run rootless as BUILD_USER)"

SHARED_BENCH=${SHARED_BENCH:-}
if [ -z "$SHARED_BENCH" ]; then
  for d in "$repo/../shared/bench" "$repo/../../shared/bench"; do
    [ -d "$d/anchors" ] && { SHARED_BENCH=$(cd "$d" && pwd); break; }
  done
fi
[ -d "$SHARED_BENCH/anchors" ] || die "no shared bench directory (set SHARED_BENCH)"
tools=${ANCHORS-buildah docker} # before lib.sh, which sets ANCHORS to its directory
# shellcheck source=/dev/null
. "$SHARED_BENCH/anchors/lib.sh" # REGISTRY, WORKLOADS, TESTENV, measure
REPS=${REPS:-3}
if [ -z "${BUILD_USER:-}" ]; then
  BUILD_USER=kilnuser
  id builder >/dev/null 2>&1 && BUILD_USER=builder
fi
grep -q "^$BUILD_USER:" /etc/subuid || die "$BUILD_USER has no /etc/subuid range"
uid=$(id -u "$BUILD_USER") gid=$(id -g "$BUILD_USER")
WL=${*:-java-layers multi-stage big-base-small-runs apt-install many-files}
# pigz if there is one (.ci/deps does not install it), else gzip.
gunzip=(gzip -dc)
command -v pigz >/dev/null && gunzip=(pigz -dc)
stamp=$(date -u +%Y%m%dT%H%M%S)
BENCH_OUT=${BENCH_OUT:-$repo/bench/out/compare-$stamp}
mkdir -p "$BENCH_OUT"
RES=$BENCH_OUT/results.tsv
LOG=$BENCH_OUT/run.log
: >"$RES"
work=$(mktemp -d /var/tmp/kiln-compare.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(load)
commit=$(git -C "$repo" rev-parse --short HEAD)
dirty=$(git -C "$repo" status --porcelain --untracked-files=no | grep -q . && echo " (with uncommitted changes)" || true)

echo "compare.sh: building kiln and the bench tools at $commit$dirty" >&2
(cd "$repo" && go build -o "$work/bin/kiln" ./cmd/kiln &&
  go build -o "$work/bin/" ./bench/cmd/compress ./bench/cmd/extract) || die "go build failed"
chmod -R a+rX "$work/bin"
echo "kiln $commit$dirty, $(date -u '+%Y-%m-%d %H:%M UTC'), REPS=$REPS, anchors: ${tools:-none}, floor gunzip: ${gunzip[0]}, $(nproc) CPUs, load average (1, 5, 15 min) $load_before before" >"$BENCH_OUT/header.txt"
"$TESTENV/registry-up" >/dev/null
curl -fsS -o /dev/null "http://$REGISTRY/v2/library/debian-big/manifests/bookworm" \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' || "$TESTENV/base-images" >/dev/null

# base_layers WORKLOAD DIR: the workload's base image's layers, compressed
# (DIR/N.gz) and uncompressed (DIR/N.tar), fetched from the registry once.
base_layers() {
  local w=$1 dir=$2 img mf i=0 d
  img=$(sed -n 's/^FROM \${REGISTRY}\/\([^ ]*\).*/\1/p' "$WORKLOADS/$w/Dockerfile" | head -1)
  [ -n "$img" ] || die "$w: no FROM \${REGISTRY}/... line"
  mkdir -p "$dir"
  [ -f "$dir/done" ] && return 0
  mf=$(curl -fsS "http://$REGISTRY/v2/${img%:*}/manifests/${img##*:}" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json')
  for d in $(jq -r '.layers[].digest' <<<"$mf"); do
    i=$((i + 1))
    curl -fsS -o "$dir/$i.gz" "http://$REGISTRY/v2/${img%:*}/blobs/$d"
    "${gunzip[@]}" "$dir/$i.gz" >"$dir/$i.tar"
  done
  chmod -R a+rX "$dir"
  touch "$dir/done"
}

# "${as_user[@]}" CMD...: CMD as BUILD_USER with a clean environment
# (more VAR=VALUE may come first).
as_user=(setpriv --reuid="$uid" --regid="$gid" --init-groups env -i HOME="$work" USER="$BUILD_USER"
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin)

# fresh DIR: an empty directory owned by BUILD_USER (the last one removed).
fresh() {
  rm -rf "$1"
  mkdir -p "$1"
  chown "$uid:$gid" "$1"
}

kiln_build() { # WORKLOAD REP
  local w=$1 rep=$2 s=$work/state ctx=$WORKLOADS/$1 klog
  fresh "$s"
  mkdir -p "$s/root" "$s/xdg"
  chown -R "$uid:$gid" "$s"
  chmod 700 "$s/xdg"
  klog=$BENCH_OUT/kiln-$w-$rep.log
  measure "$RES" kiln "$w" cold-build "$rep" "$klog" -- \
    "${as_user[@]}" XDG_RUNTIME_DIR="$s/xdg" "$work/bin/kiln" --root "$s/root" --progress plain \
    build --build-arg "REGISTRY=$REGISTRY" -t "localhost/bench/$w:latest" -f "$ctx/Dockerfile" "$ctx" || true
  # The phases kiln logs: "unpacked N layer(s) in D", "RUN done in ...
  # (command D, diff and layer D, ...)"; summed over the build's steps.
  awk -v w="$w" -v rep="$rep" '
    function sec(s) { if (s ~ /ms$/) return substr(s, 1, length(s) - 2) / 1000; if (s ~ /µs$/) return substr(s, 1, length(s) - 2) / 1e6; if (s ~ /m[0-9.]+s$/) { split(s, a, "m"); return a[1] * 60 + substr(a[2], 1, length(a[2]) - 1) } return substr(s, 1, length(s) - 1) + 0 }
    / unpacked [0-9]+ layer\(s\) in / { u += sec($NF); nu++ }
    / RUN done in / { match($0, /command [^,]*/); c += sec(substr($0, RSTART + 8, RLENGTH - 8)); match($0, /diff and layer [^,]*/); d += sec(substr($0, RSTART + 15, RLENGTH - 15)); nr++ }
    END {
      if (nu) printf "kiln\t%s\tunpack\t%s\t%.2f\t0\t0\n", w, rep, u
      if (nr) printf "kiln\t%s\tcommand\t%s\t%.2f\t0\t0\nkiln\t%s\tdiff\t%s\t%.2f\t0\t0\n", w, rep, c, w, rep, d
    }
  ' "$klog" >>"$RES"
  # The no-change rebuild: the same build again in that store.
  measure "$RES" kiln "$w" warm-build "$rep" "$BENCH_OUT/kiln-$w-$rep-warm.log" -- \
    "${as_user[@]}" XDG_RUNTIME_DIR="$s/xdg" "$work/bin/kiln" --root "$s/root" --progress plain \
    build --build-arg "REGISTRY=$REGISTRY" -t "localhost/bench/$w:latest" -f "$ctx/Dockerfile" "$ctx" || true
  rm -rf "$s"
}

floors() { # WORKLOAD REP
  local w=$1 rep=$2 L=$work/layers-$1 flog=$BENCH_OUT/floors.log t ctx=$WORKLOADS/$1
  case $w in
  java-layers)
    # A no-change rebuild must at least stat every context file; a cold
    # build at least writes its layers (tar, compress, hash).
    measure "$RES" floor "$w" stat "$rep" "$flog" -- \
      "${as_user[@]}" sh -c "find $ctx -printf '%s %T@ %C@ %i\n' >/dev/null" || true
    measure "$RES" floor "$w" layers "$rep" "$flog" -- \
      bash -o pipefail -c "tar -cf - -C $ctx . | $work/bin/compress | openssl dgst -sha256 >/dev/null" || true
    return 0
    ;;
  multi-stage)
    measure "$RES" floor "$w" layer "$rep" "$flog" -- \
      bash -o pipefail -c "head -c 20M /dev/urandom | $work/bin/compress | openssl dgst -sha256 >/dev/null" || true
    return 0
    ;;
  esac
  base_layers "$w" "$L"
  fresh "$work/floor"
  measure "$RES" floor "$w" unpack "$rep" "$flog" -- \
    "${as_user[@]}" sh -c "for t in $L/*.tar; do tar -xf \"\$t\" -C $work/floor --no-same-owner || exit 1; done" || true
  fresh "$work/floor"
  measure "$RES" kiln "$w" extract "$rep" "$flog" -- \
    "${as_user[@]}" sh -c "$work/bin/extract $work/floor/x $L/*.tar >/dev/null" || true
  rm -rf "$work/floor"
  measure "$RES" floor "$w" gunzip "$rep" "$flog" -- sh -c "cat $L/*.gz | ${gunzip[*]} >/dev/null" || true
  measure "$RES" floor "$w" hash "$rep" "$flog" -- sh -c "cat $L/*.tar | openssl dgst -sha256 >/dev/null" || true
  measure "$RES" floor "$w" compress "$rep" "$flog" -- sh -c "cat $L/*.tar | $work/bin/compress >/dev/null" || true
  if [ "$w" = many-files ]; then
    fresh "$work/floor"
    t=$(sed -n 's/^RUN //p' "$WORKLOADS/$w/Dockerfile" | head -1)
    sh=(sh) # the workload's image runs busybox's sh: the host's, if it has one
    command -v busybox >/dev/null && sh=(busybox sh)
    measure "$RES" floor "$w" command "$rep" "$flog" -- "${as_user[@]}" "${sh[@]}" -c "cd $work/floor && ${t//\/data/data}" || true
    rm -rf "$work/floor"
  fi
}

anchor() { # TOOL WORKLOAD REP
  local tool=$1 w=$2 rep=$3 id=compare-$stamp-$rep
  [ -x "$SHARED_BENCH/anchors/$tool.sh" ] || return 0
  REPS=1 RUN_ID=$id BUILD_USER=$BUILD_USER BENCH_DIR=$work/anchors \
    "$SHARED_BENCH/anchors/$tool.sh" "$w" >>"$LOG" 2>&1 || echo "compare.sh: $tool $w rep $rep failed (see $LOG)" >&2
  # Their cold-build rows, renamed by rep.
  cat "$work/anchors/results/"*"-$id.tsv" 2>/dev/null |
    awk -F'\t' -v rep="$rep" -v w="$w" 'BEGIN { OFS = "\t" } $2 == w && $3 == "cold-build" { $4 = rep; print }' >>"$RES"
  rm -f "$work/anchors/results/"*"-$id.tsv"
}

for rep in $(seq "$REPS"); do
  for w in $WL; do
    [ -f "$WORKLOADS/$w/Dockerfile" ] || die "no workload $w"
    "$WORKLOADS/$w/gen"
    echo "compare.sh: rep $rep $w (load $(load))" >&2
    kiln_build "$w" "$rep"
    floors "$w" "$rep"
    for a in $tools; do anchor "$a" "$w" "$rep"; done
  done
done
# ---- table ---------------------------------------------------------------
load_after=$(load)
{
  echo "$(cat "$BENCH_OUT/header.txt"), $load_after after"
  echo
  table "$RES"
} | tee "$BENCH_OUT/table.md"
echo "compare.sh: results in $BENCH_OUT" >&2
