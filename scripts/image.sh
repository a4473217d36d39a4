#!/usr/bin/env bash
# Builds, runs and tests the attention-service container image (Dockerfile).
#
#   scripts/image.sh build [DIR]      build $IMAGE from DIR (default: this working tree)
#   scripts/image.sh run [FLAGS...]   serve on 0.0.0.0:50051 with the host network;
#                                     FLAGS are more attention_server flags
#   scripts/image.sh test [--worktree] tests/deploy/container_test.sh (a clean clone of
#                                     HEAD, or this working tree with --worktree)
#   scripts/image.sh size             the image size in MiB
#   scripts/image.sh base             make sure debian:bookworm-slim is there (pull it,
#                                     else build it with debootstrap from the apt mirror)
#   scripts/image.sh engine ARGS...   run podman/docker ARGS with this script's settings
#   scripts/image.sh clean            remove the image and the private podman store
#
# Environment:
#   IMAGE             image name (attention-service:latest)
#   ENGINE            podman or docker (podman when installed, else a docker with a
#                     running engine, else podman installed with apt-get)
#   JOBS              compile jobs in the build stage (nproc)
#   ATTN_ARCH         -march of project code (x86-64-v3; x86-64 for any x86-64 node)
#   ATTN_PODMAN_ROOT  podman's private store and config (/var/tmp/attention-podman);
#                     empty: podman's own configuration and store
#   ATTN_BASE         auto (pull, else debootstrap), pull, or debootstrap
#   BUILD_FLAGS       more `podman build` flags (e.g. --no-cache)
#   DEPS_FLAGS        arguments of scripts/install-deps.sh in the build stage
#                     (unset: the Dockerfile's default, --build-only)
#
# Podman settings of the private configuration (what this sandbox needs):
# runtime runc (crun cannot start containers here), cgroupfs, nofile/nproc
# ulimits the kernel lets a container set, the host network for builds and runs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-attention-service:latest}"
JOBS="${JOBS:-$(nproc)}"
ATTN_ARCH="${ATTN_ARCH:-x86-64-v3}"
ATTN_BASE="${ATTN_BASE:-auto}"
BUILD_FLAGS="${BUILD_FLAGS:-}"
BASE_IMAGE="docker.io/library/debian:bookworm-slim"
ATTN_PODMAN_ROOT="${ATTN_PODMAN_ROOT-/var/tmp/attention-podman}"
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

log() { echo "image.sh: $*" >&2; }

# The engine: $ENGINE, else podman, else a docker whose engine answers; with
# neither, Debian's podman (runc: crun cannot start containers in some
# sandboxes; debootstrap: for the base image where no registry is reachable).
choose_engine() {
  [[ -n "${ENGINE:-}" ]] && return 0
  if command -v podman >/dev/null 2>&1; then ENGINE=podman; return 0; fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker; return 0; fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "no container engine: install podman (Debian: apt-get install podman runc debootstrap)"
    exit 1
  fi
  log "installing podman runc debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends podman runc debootstrap; } \
       >/tmp/attention-image-apt.log 2>&1; then
    tail -20 /tmp/attention-image-apt.log >&2
    exit 1
  fi
  ENGINE=podman
}

# Private podman configuration: its own store, runc, cgroupfs, file events.
setup_podman() {
  [[ "$ENGINE" == podman && -n "$ATTN_PODMAN_ROOT" ]] || return 0
  mkdir -p "$ATTN_PODMAN_ROOT/tmp"
  cat >"$ATTN_PODMAN_ROOT/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$ATTN_PODMAN_ROOT/storage"
runroot = "$ATTN_PODMAN_ROOT/run"
EOF
  cat >"$ATTN_PODMAN_ROOT/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$ATTN_PODMAN_ROOT/tmp"
[network]
network_config_dir = "$ATTN_PODMAN_ROOT/networks"
EOF
  export CONTAINERS_STORAGE_CONF="$ATTN_PODMAN_ROOT/storage.conf"
  export CONTAINERS_CONF="$ATTN_PODMAN_ROOT/containers.conf"
}

engine() { "$ENGINE" "$@"; }

# The first Debian mirror of apt's own sources (deb822 or one-line format).
apt_mirror() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 ~ /bookworm/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
          /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# A stand-in for the official debian:bookworm-slim where no registry is
# reachable: debootstrap minbase from apt's mirror, slimmed the way the
# official image is (no docs, man pages or locales; the same dpkg/apt
# settings), with this machine's apt sources so that apt-get in the build
# reaches the same mirror.
debootstrap_base() {
  if [[ $(id -u) -ne 0 ]]; then log "debootstrap needs root"; exit 1; fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap \
      >/tmp/attention-image-apt.log 2>&1 || { tail -20 /tmp/attention-image-apt.log >&2; exit 1; }
  fi
  local mirror work rootfs
  mirror=$(apt_mirror)
  work=$(mktemp -d "${ATTN_PODMAN_ROOT:-/var/tmp}/base.XXXXXX")
  rootfs="$work/rootfs"
  log "debootstrap --variant=minbase bookworm from $mirror"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" >&2; rm -rf "$work"; exit 1
  fi
  # apt: this machine's sources and Acquire settings (proxies, validity).
  rm -f "$rootfs/etc/apt/sources.list"
  if [[ -f /etc/apt/sources.list ]]; then cp /etc/apt/sources.list "$rootfs/etc/apt/"; fi
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && cp "$f" "$rootfs/etc/apt/sources.list.d/"
  done
  for f in /etc/apt/apt.conf.d/*; do
    [[ -f "$f" ]] && grep -q '^Acquire::' "$f" && cp "$f" "$rootfs/etc/apt/apt.conf.d/"
  done
  # The official slim image's dpkg excludes and apt settings (debuerreotype).
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  echo 'force-unsafe-io' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,man}/* "$rootfs"/usr/share/lintian/overrides/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
         "$rootfs"/tmp/* "$rootfs"/var/tmp/*
  tar -C "$rootfs" --numeric-owner -cf - . \
    | engine import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$work"
  log "imported $BASE_IMAGE ($(size_mib "$BASE_IMAGE") MiB)"
}

ensure_base() {
  if engine image exists "$BASE_IMAGE" 2>/dev/null \
     || engine image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  case "$ATTN_BASE" in
    pull) engine pull "$BASE_IMAGE" ;;
    debootstrap) debootstrap_base ;;
    auto)
      if ! engine pull "$BASE_IMAGE" >/dev/null 2>&1; then
        log "cannot pull $BASE_IMAGE: building it with debootstrap"
        debootstrap_base
      fi ;;
    *) log "ATTN_BASE must be auto, pull or debootstrap"; exit 1 ;;
  esac
}

size_mib() {
  local bytes
  bytes=$(engine image inspect --format '{{.Size}}' "${1:-$IMAGE}")
  awk -v b="$bytes" 'BEGIN { printf "%.1f\n", b / 1048576 }'
}

build() {
  local context="${1:-$repo}"
  ensure_base
  local names=("$IMAGE") rev
  if rev=$(git -C "$context" rev-parse --short HEAD 2>/dev/null); then
    if [[ -n "$(git -C "$context" status --porcelain 2>/dev/null)" ]]; then rev="$rev-dirty"; fi
    names+=("${IMAGE%:*}:$rev")
  fi
  local tags=() name
  for name in "${names[@]}"; do tags+=(-t "$name"); done
  local flags=(--network host "${ULIMITS[@]}"
               --build-arg "JOBS=$JOBS" --build-arg "ATTN_ARCH=$ATTN_ARCH")
  if [[ -n "${DEPS_FLAGS+set}" ]]; then flags+=(--build-arg "DEPS_FLAGS=$DEPS_FLAGS"); fi
  if [[ "$ENGINE" == podman ]]; then
    # --format docker keeps HEALTHCHECK (OCI image configs have none);
    # --pull=never builds FROM the local debian:bookworm-slim.
    flags+=(--format docker --layers --pull=never)
  fi
  log "building $IMAGE from $context"
  local start=$SECONDS
  # shellcheck disable=SC2086  # BUILD_FLAGS is a list of flags
  engine build "${flags[@]}" "${tags[@]}" $BUILD_FLAGS -f "$context/Dockerfile" "$context"
  if [[ "$ENGINE" == podman && -n "$ATTN_PODMAN_ROOT" ]]; then
    # Name the build stage (all its layers are cached: a second) so that
    # pruning the private store drops only the layers of older builds.
    # shellcheck disable=SC2086
    engine build "${flags[@]}" --target build -t "${IMAGE%:*}:build-stage" $BUILD_FLAGS \
      -f "$context/Dockerfile" "$context" >/dev/null
    engine image prune -f >/dev/null
  fi
  log "built ${names[*]} in $((SECONDS - start)) s: $(size_mib) MiB"
}

run() {
  engine run --rm --name attention-server --network host "${ULIMITS[@]}" \
    --stop-timeout 40 "$IMAGE" "$@"
}

cmd="${1:-}"
case "$cmd" in
  build|run|test|size|base|engine|engine-name|clean) choose_engine; export ENGINE; setup_podman ;;
esac
shift || true
case "$cmd" in
  build) build "$@" ;;
  run) run "$@" ;;
  test) exec "$repo/tests/deploy/container_test.sh" "$@" ;;
  size) size_mib "$IMAGE" ;;
  base) ensure_base ;;
  engine) engine "$@" ;;
  engine-name) echo "$ENGINE" ;;
  clean)
    engine rmi -f "$IMAGE" >/dev/null 2>&1 || true
    if [[ "$ENGINE" == podman && -n "$ATTN_PODMAN_ROOT" ]]; then
      engine system reset -f >/dev/null 2>&1 || true
      rm -rf "$ATTN_PODMAN_ROOT"
    fi ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    [[ -z "$cmd" || "$cmd" == -h || "$cmd" == --help ]] ;;
esac
