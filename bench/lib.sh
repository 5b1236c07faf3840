# Shared set-up of the bench scripts: source it after setting BENCH_NAME,
# BENCH_OUT, WL (the workload directory) and repo (the module root). It
# checks the prerequisites, builds kiln and the bench tools into $bin,
# starts a private docker-registry (or uses $REGISTRY), pushes the Debian
# base, and generates the workload's context. It defines die, say and
# cleanup (on EXIT), and sets work, bin, REGISTRY and base_layers.
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
say() { echo "$BENCH_NAME: $*" >&2; }

# ---- prerequisites ---------------------------------------------------------
if [ ! -x /usr/bin/time ]; then
  [ "$(id -u)" -eq 0 ] || die "/usr/bin/time missing: sudo apt-get install time (or sudo .ci/deps)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >/dev/null; }
fi
for p in go jq openssl curl tar; do command -v "$p" >/dev/null || die "$p not found (sudo .ci/deps installs it)"; done

mkdir -p "$BENCH_OUT"
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

say "building kiln and the bench tools"
(cd "$repo" && go build -o "$work/bin/kiln" ./cmd/kiln &&
  go build -o "$work/bin/" ./bench/cmd/floor ./bench/cmd/compress ./bench/cmd/pushbase ./bench/cmd/countproxy) ||
  die "go build failed"
bin=$work/bin

# ---- registry ----------------------------------------------------------------
registry_ok() { curl -fsS -o /dev/null --max-time 2 "http://$1/v2/" 2>/dev/null; }
if [ -n "${REGISTRY:-}" ]; then
  registry_ok "$REGISTRY" || die "no registry answers at http://$REGISTRY/v2/"
else
  [ -x /usr/bin/docker-registry ] || die "/usr/bin/docker-registry missing: sudo .ci/deps (package docker-registry)"
  port=
  for p in $(seq 5100 5199); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
  done
  [ -n "$port" ] || die "no free port in 5100-5199"
  REGISTRY=127.0.0.1:$port
  mkdir -p "$work/registry/storage"
  cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/storage
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  env -u REGISTRY /usr/bin/docker-registry serve "$work/registry/config.yml" >"$BENCH_OUT/registry.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 150); do registry_ok "$REGISTRY" && break; sleep 0.2; done
  registry_ok "$REGISTRY" || { tail "$BENCH_OUT/registry.log" >&2; die "docker-registry did not start on $REGISTRY"; }
fi
say "registry $REGISTRY"

say "pushing library/debian:bookworm (first run on a machine: mmdebstrap, ~35 s)"
"$bin/pushbase" -registry "$REGISTRY" -images debian -json "$work/base.json" >"$BENCH_OUT/pushbase.log" 2>&1 ||
  { tail -n 30 "$BENCH_OUT/pushbase.log" >&2; die "pushbase failed"; }
mapfile -t base_layers < <(jq -r '.[0].layers[]' "$work/base.json")

say "generating the workload context"
"$WL/gen"

