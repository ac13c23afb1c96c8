#!/usr/bin/env bash
# Build the edgeward image from docker/Dockerfile on a machine that has a
# Docker engine and no image registry (ours: Debian's docker.io, no Docker Hub).
#
#   docker/build.sh                  # edgeward:dev, and the base images it needs
#   docker/build.sh --redis          # also redis:7-bookworm, for docker/compose.yml
#   docker/build.sh --bases          # only the base images
#   IMAGE=edgeward:test docker/build.sh
#
# Nothing is pulled. A base image that is missing is made here, from Debian's
# packages and this machine's Rust toolchain, under the name the Dockerfile
# and compose.yml use, so both stay ordinary files that build and run the same
# where a registry exists. Each one made here carries the label
# org.opencontainers.image.vendor=edgeward-docker-build.sh:
#
#   debian:bookworm-slim     mmdebstrap --variant=minbase bookworm (merged
#                            /usr; no docs, man pages or locales, as Docker's
#                            slim image), then docker import
#   rust:1.95-slim-bookworm  debian:bookworm-slim + gcc, libc6-dev and
#                            ca-certificates (as the official rust slim image)
#                            + this machine's Rust 1.95 toolchain (cargo,
#                            rustc, rustdoc, the standard library), at the
#                            official image's paths (CARGO_HOME=/usr/local/cargo)
#   redis:7-bookworm         (--redis) debian:bookworm-slim + Debian's
#                            redis-server 7, run as user redis in /data
#
# An image that exists already (made here or pulled) is used as it is: to
# remake one, `docker rmi` it first. Builds run with --network host (our
# engine runs with --bridge=none) and BuildKit, which the Dockerfile's cache
# mounts need: `docker buildx` when the client has it, else Debian's docker
# client (/usr/bin/docker) with DOCKER_BUILDKIT=1.
#
# Environment: IMAGE (default edgeward:dev), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), RUST_SYSROOT (default: `rustc --print sysroot`).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-edgeward:dev}
DEBIAN_IMAGE=debian:bookworm-slim
RUST_IMAGE=rust:1.95-slim-bookworm
REDIS_IMAGE=redis:7-bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOCAL_LABEL=org.opencontainers.image.vendor=edgeward-docker-build.sh

want_edgeward=1 want_redis=0
for arg in "$@"; do
  case "$arg" in
    --redis) want_redis=1 ;;
    --bases) want_edgeward=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "no docker client (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start one: dockerd --bridge=none --iptables=false; scripts/deps.sh ci does)"

# A BuildKit build command: RUN --mount in the Dockerfile needs BuildKit.
if docker buildx version >/dev/null 2>&1; then
  BUILD=(docker buildx build --load)
elif [ -x /usr/bin/docker ] && DOCKER_BUILDKIT=1 /usr/bin/docker build --help >/dev/null 2>&1; then
  BUILD=(env DOCKER_BUILDKIT=1 /usr/bin/docker build)
else
  die "no BuildKit-capable docker client: install buildx, or Debian's docker.io (/usr/bin/docker)"
fi
build() { "${BUILD[@]}" --pull=false --network host --progress plain "$@"; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

make_debian() {
  command -v mmdebstrap >/dev/null 2>&1 || die "$DEBIAN_IMAGE is missing and mmdebstrap is not installed (apt-get install mmdebstrap)"
  say "making $DEBIAN_IMAGE with mmdebstrap from $DEBIAN_MIRROR"
  local security=${DEBIAN_MIRROR%/debian}/debian-security
  local excl=(/usr/share/doc/'*' /usr/share/man/'*' /usr/share/info/'*' /usr/share/locale/'*'
              /usr/share/groff/'*' /usr/share/lintian/'*' /usr/share/linda/'*')
  local dpkgopts=() p
  for p in "${excl[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=$p"); done
  dpkgopts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
  # The dpkg and apt settings stay in the image (/etc/dpkg/dpkg.cfg.d/99mmdebstrap,
  # /etc/apt/apt.conf.d/99mmdebstrap), so packages installed on top of it
  # leave out their documentation too, as in Docker's slim images.
  # As in Docker's Debian images: apt deletes the packages it downloaded
  # once they are installed (a Dockerfile then only removes the lists).
  cat >"$TMP/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  # shellcheck disable=SC2016  # the hook's $1 is mmdebstrap's, not ours
  mmdebstrap --quiet --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    "${dpkgopts[@]}" \
    --aptopt='Acquire::Languages "none"' \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook="upload $TMP/docker-clean /etc/apt/apt.conf.d/docker-clean" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/log/*.log "$1"/var/log/apt/*' \
    bookworm "$TMP/bookworm.tar" \
    "deb $DEBIAN_MIRROR bookworm main" \
    "deb $DEBIAN_MIRROR bookworm-updates main" \
    "deb $security bookworm-security main"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL $LOCAL_LABEL" \
    --message "mmdebstrap --variant=minbase bookworm (docker/build.sh)" \
    "$TMP/bookworm.tar" "$DEBIAN_IMAGE" >/dev/null
  rm -f "$TMP/bookworm.tar"
}

make_rust() {
  local sysroot version ctx=$TMP/rust
  if [ -z "${RUST_SYSROOT:-}" ]; then
    if ! command -v rustc >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/rustc" ]; then
      PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v rustc >/dev/null 2>&1 || die "$RUST_IMAGE is missing and there is no Rust toolchain here to put in it"
    sysroot=$(rustc --print sysroot)
  else
    sysroot=$RUST_SYSROOT
  fi
  version=$("$sysroot/bin/rustc" --version | awk '{print $2}')
  case "$version" in
    1.95.*) ;;
    *) die "$RUST_IMAGE is missing and the toolchain in $sysroot is rustc $version, not 1.95" ;;
  esac
  say "making $RUST_IMAGE from $DEBIAN_IMAGE and the Rust $version toolchain in $sysroot"
  mkdir -p "$ctx/toolchain/bin"
  cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$sysroot/bin/rustdoc" "$ctx/toolchain/bin/"
  cp -a "$sysroot/lib" "$ctx/toolchain/"
  # This machine's own certificate authorities (a TLS-inspecting egress proxy
  # signs crates.io's certificate with one here): the builder trusts what the
  # host trusts, so cargo reaches crates.io from it as it does from the host.
  mkdir -p "$ctx/ca"
  find /usr/local/share/ca-certificates -name '*.crt' -type f -exec cp {} "$ctx/ca/" \; 2>/dev/null || true
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/* \\
 && update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$version
COPY toolchain /usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu
RUN mkdir -p /usr/local/cargo/bin \\
 && for b in cargo rustc rustdoc; do \\
        ln -s /usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/bin/\$b /usr/local/cargo/bin/\$b; \\
    done \\
 && chmod -R a+w /usr/local/cargo \\
 && rustc --version && cargo --version
LABEL $LOCAL_LABEL
EOF
  build -t "$RUST_IMAGE" "$ctx"
  rm -rf "$ctx"
}

make_redis() {
  local ctx=$TMP/redis
  say "making $REDIS_IMAGE from $DEBIAN_IMAGE and Debian's redis-server"
  mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && install -d -o redis -g redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
LABEL $LOCAL_LABEL
EOF
  build -t "$REDIS_IMAGE" "$ctx"
}

# timed NAME COMMAND...: run COMMAND and say how long it took.
timed() { local t=$SECONDS; "${@:2}"; say "$1: $((SECONDS - t))s"; }

have_image "$DEBIAN_IMAGE" || timed "made $DEBIAN_IMAGE" make_debian
have_image "$RUST_IMAGE" || timed "made $RUST_IMAGE" make_rust
if [ "$want_redis" = 1 ]; then
  have_image "$REDIS_IMAGE" || timed "made $REDIS_IMAGE" make_redis
fi

if [ "$want_edgeward" = 1 ]; then
  say "building $IMAGE from docker/Dockerfile"
  timed "built $IMAGE" build -f docker/Dockerfile -t "$IMAGE" .
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
  say "$IMAGE: $(( size / 1000000 )) MB ($size bytes)"
fi
