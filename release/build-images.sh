#!/bin/bash
# Build kiln's own images with kiln and push them:
#
#   release/build-images.sh REPO [VERSION]
#
# REPO:VERSION and REPO:latest      scratch + static kiln, CA certificates,
#                                   the kiln user (1000) with subordinate ids,
#                                   newuidmap/newgidmap with file capabilities
# REPO:VERSION-debug and REPO:debug the same plus busybox (a shell for CI)
#
# Each is an index for PLATFORMS (default linux/amd64,linux/arm64): kiln is
# cross-compiled (CGO_ENABLED=0 -trimpath, version stamped) and the Debian
# packages of newuidmap/newgidmap, their libraries and busybox-static are
# downloaded for each architecture with a private apt state (the system's
# apt configuration is not changed). The build is reproducible:
# SOURCE_DATE_EPOCH defaults to the commit's time, so the same commit gives
# the same digests.
#
# Env: KILN        kiln binary that builds the images (default: built here)
#      KILN_FLAGS  extra global flags for it (e.g. "--root DIR --tls-verify=false")
#      PLATFORMS   comma-separated platforms (linux/amd64, linux/arm64)
#      PUSH        0 to build into kiln's store without pushing
#      RELEASE_CACHE  directory kept between runs for downloaded packages
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-images: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: release/build-images.sh REPO [VERSION]"
repo=$1
version=${2:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
platforms=${PLATFORMS:-linux/amd64,linux/arm64}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-release.XXXXXX")
trap 'rm -rf "$work"' EXIT
cache=${RELEASE_CACHE:-$work/cache}
ctx=$work/context
mkdir -p "$ctx" "$cache"
cp -r release/context/. "$ctx/"
cp release/Dockerfile "$ctx/Dockerfile"
install -d -m 0755 "$ctx/home" "$ctx/home/kiln" "$ctx/home/kiln/.local" "$ctx/home/kiln/.local/share" "$ctx/home/kiln/.local/share/kiln"
install -d -m 0755 "$ctx/kaniko" "$ctx/kaniko/.docker"
ln -s /usr/local/bin/kiln "$ctx/kaniko/executor"
[ -r /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"

# debs ARCH PKG...: download and unpack Debian packages of ARCH into
# $cache/root-ARCH, with apt state of its own.
debs() {
  local arch=$1 st=$cache/apt-$1
  shift
  mkdir -p "$st/lists/partial" "$st/archives/partial" "$st/debs"
  local o=(-qq -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st" -o "Dir::Cache::archives=$st/archives"
    -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o Debug::NoLocking=1)
  [ -n "$(ls "$st/lists" 2>/dev/null | grep Packages)" ] || apt-get "${o[@]}" update >/dev/null ||
    die "apt-get update for $arch failed"
  (cd "$st/debs" && apt-get "${o[@]}" download "$@" 2>&1 | grep -v unsandboxed || true)
  for p in "$@"; do
    ls "$st/debs/${p}_"*"_$arch.deb" >/dev/null 2>&1 || ls "$st/debs/${p}_"*"_all.deb" >/dev/null 2>&1 ||
      die "could not download $p for $arch"
  done
  rm -rf "$cache/root-$arch"
  mkdir -p "$cache/root-$arch"
  for d in "$st/debs"/*.deb; do dpkg-deb -x "$d" "$cache/root-$arch"; done
}

go build -o "$work/mkrootfs" ./release/mkrootfs
applets=$(/bin/busybox --list 2>/dev/null | grep -vx busybox | tr '\n' ',' | sed 's/,$//')
[ -n "$applets" ] || applets=sh,ash,cat,sleep,ls,echo,env,mkdir,rm,cp,mv,ln,grep,sed,awk,tar,gzip,id,test,[,printf,tee,wc,head,tail,find,xargs,chmod,true,false,date,ps,kill,sort,uniq,cut,tr,basename,dirname,pwd,which,wget,vi,less

IFS=, read -ra plats <<<"$platforms"
for p in "${plats[@]}"; do
  os=${p%%/*} arch=${p#*/}
  arch=${arch%%/*}
  [ "$os" = linux ] || die "platform $p: kiln's images are linux only"
  out=$ctx/${os}_$arch
  mkdir -p "$out"
  echo "build-images: kiln $version for $os/$arch" >&2
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X github.com/kiln-build/kiln/internal/cli.Version=$version -X github.com/kiln-build/kiln/internal/cli.Commit=$commit" \
    -o "$out/kiln" ./cmd/kiln
  debs "$arch" uidmap libaudit1 libselinux1 libc6 libcap-ng0 libpcre2-8-0 busybox-static
  "$work/mkrootfs" -root "$cache/root-$arch" -out "$out/uidmap.tar" -mtime "$SOURCE_DATE_EPOCH" \
    -cap /usr/bin/newuidmap=cap_setuid -cap /usr/bin/newgidmap=cap_setgid /usr/bin/newuidmap /usr/bin/newgidmap
  "$work/mkrootfs" -root "$cache/root-$arch" -out "$out/busybox.tar" -mtime "$SOURCE_DATE_EPOCH" \
    -applets "/bin/busybox=$applets" /bin/busybox
done

kiln=${KILN:-}
if [ -z "$kiln" ]; then
  CGO_ENABLED=0 go build -trimpath -o "$work/kiln" ./cmd/kiln
  kiln=$work/kiln
fi
push=--push
[ "${PUSH:-1}" = 0 ] && push=
# shellcheck disable=SC2086
"$kiln" ${KILN_FLAGS:-} build --platform "$platforms" --target kiln $push \
  -t "$repo:$version" -t "$repo:latest" --digestfile "$work/kiln.digest" "$ctx" >/dev/null
# shellcheck disable=SC2086
"$kiln" ${KILN_FLAGS:-} build --platform "$platforms" --target debug $push \
  -t "$repo:$version-debug" -t "$repo:debug" --digestfile "$work/debug.digest" "$ctx" >/dev/null
echo "$repo:$version@$(cat "$work/kiln.digest")"
echo "$repo:$version-debug@$(cat "$work/debug.digest")"
