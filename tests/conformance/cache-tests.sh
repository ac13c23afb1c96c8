#!/usr/bin/env bash
# HTTP caching conformance (github.com/http-tests/cache-tests, the suite behind
# cache-tests.fyi) of edgeward's cache, through the kit in
# ../shared/tools/cache-tests, with the PRODUCT DEFAULTS: the test site has
# `cache: { enabled: true }`, no WAF, and every other setting is left at its
# default (threads, access log, Redis key prefix, timeout and near cache).
#
# usage: tests/conformance/cache-tests.sh [memory|redis|redis-direct ...]
#   default: all three.
#   memory        cache.storage: memory
#   redis         cache.storage: redis (a redis-server this script starts)
#   redis-direct  the same with cache.redis.local_size: 0 (no near cache:
#                 every lookup a Redis round trip), the one setting changed
# env:
#   SHARED           the shared kit (default ../shared, beside the repository)
#   CACHE_TESTS_DIR  a copy of the suite with `npm ci --omit=dev` done. Default:
#                    the script copies $SHARED/data/cache-tests-suite to a temp
#                    dir and runs `npm ci --omit=dev` there (the suite is never
#                    part of this repository)
#   EDGEWARD         the binary (default target/release/edgeward, built as it
#                    ships, by scripts/build)
#   OUT_DIR          where the result JSON files go (default: the temp dir, kept
#                    and printed at the end)
#   STORE_SET_COOKIE true|false: set the site's cache.store_set_cookie (default:
#                    not set, i.e. the product default false)
#   REDIS_TIMEOUT    set cache.redis.timeout (default: not set, i.e. 50ms)
#   MIN_PASSED, MIN_REQUIRED  floors (default 215 of 265 and 144 of 160): the
#                    script fails when a storage scores below either
#   REPORT_ONLY=1    print the scores, never fail on them
#   STRICT_KNOWN=1   also fail when a storage's failures differ from
#                    tests/conformance/cache-tests-known-failures.md (checked,
#                    and reported, only for runs with the product defaults)
# Needs node >= 20.18.1 and npm (scripts/deps.sh ci installs them when
# missing, in target/ci-node), curl, python3, redis-server.
# Prints one score line per storage, then the failures of each run against
# the known-failures file. Exit 0: every storage at or above the floors;
# 1: below a floor, or a run failed; 2: cannot run (no kit, suite or node).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
KIT="$SHARED/tools/cache-tests"
SUITE_SRC="$SHARED/data/cache-tests-suite"
KNOWN="$ROOT/tests/conformance/cache-tests-known-failures.md"
MIN_PASSED="${MIN_PASSED:-215}"
MIN_REQUIRED="${MIN_REQUIRED:-144}"
STORAGES=("$@"); (( ${#STORAGES[@]} )) || STORAGES=(memory redis redis-direct)

not_run() { echo "cache-tests.sh: not run: $*" >&2; exit 2; }
[[ -x "$KIT/run-suite.sh" ]] || not_run "no kit at $KIT"
# A node installed by scripts/deps.sh ci when the system has none or an old one.
[[ -x "$ROOT/target/ci-node/bin/node" ]] && export PATH="$ROOT/target/ci-node/bin:$PATH"
command -v node >/dev/null 2>&1 || not_run "no node (scripts/deps.sh ci installs one)"
node -e 'const v = process.versions.node.split(".").map(Number);
         process.exit(v[0] > 20 || (v[0] === 20 && (v[1] > 18 || (v[1] === 18 && v[2] >= 1))) ? 0 : 1)' \
    || not_run "node $(node --version) is too old: the suite (undici 7) needs >= 20.18.1 (scripts/deps.sh ci installs one)"
command -v redis-server >/dev/null 2>&1 || [[ " ${STORAGES[*]} " != *" redis"* ]] \
    || not_run "no redis-server (scripts/deps.sh ci installs it)"

WORK="$(mktemp -d)"
PIDS=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [[ -n "${SUITE_COPY:-}" ]] && rm -rf "$SUITE_COPY"
    rm -f "$WORK/edgeward"
    return 0
}
trap cleanup EXIT

if [[ -n "${CACHE_TESTS_DIR:-}" ]]; then
    SUITE="$CACHE_TESTS_DIR"
    [[ -f "$SUITE/tests/index.mjs" ]] || not_run "no suite at CACHE_TESTS_DIR=$SUITE"
else
    [[ -f "$SUITE_SRC/tests/index.mjs" ]] || not_run "no suite at $SUITE_SRC"
    command -v npm >/dev/null 2>&1 || not_run "no npm (scripts/deps.sh ci installs one)"
    # shared/ is read-only: install the suite's dependencies in a copy.
    SUITE_COPY="$WORK/cache-tests"
    SUITE="$SUITE_COPY"
    cp -r "$SUITE_SRC" "$SUITE"
    chmod -R u+w "$SUITE"   # shared/ may come without write bits
    echo "cache-tests: npm ci --omit=dev in a copy of $SUITE_SRC (node $(node --version))" >&2
    if ! (cd "$SUITE" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) >"$WORK/npm.log" 2>&1; then
        cat "$WORK/npm.log" >&2
        echo "cache-tests: npm ci failed" >&2
        exit 1
    fi
fi

if [[ -z "${EDGEWARD:-}" ]]; then
    "$ROOT/scripts/build" --quiet --bin edgeward
    EDGEWARD="${CARGO_TARGET_DIR:-$ROOT/target}/release/edgeward"
fi
# A copy: a shared target dir may be rebuilt meanwhile.
BIN="$WORK/edgeward"
cp "$EDGEWARD" "$BIN"
OUT_DIR="${OUT_DIR:-$WORK}"
mkdir -p "$OUT_DIR"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { local _; for _ in $(seq 100); do listening "$1" && return 0; sleep 0.05; done; return 1; }

# Settings changed from the product defaults, for the labels and the report.
site_extra=""; changed=""
if [[ -n "${STORE_SET_COOKIE:-}" ]]; then
    site_extra=", store_set_cookie: $STORE_SET_COOKIE"; changed+=" store_set_cookie=$STORE_SET_COOKIE"
fi
[[ -n "${REDIS_TIMEOUT:-}" ]] && changed+=" redis.timeout=$REDIS_TIMEOUT"
# The suite's origin on a free port (8000 may be taken on a shared machine);
# run-suite.sh starts it and stops it for each storage.
ORIGIN_PORT=$(free_port)
export ORIGIN_PORT

failed=0
for storage in "${STORAGES[@]}"; do
    label="$storage${STORE_SET_COOKIE:+-set-cookie-$STORE_SET_COOKIE}"
    port=$(free_port)
    case "$storage" in
        memory) cache_cfg="  storage: memory" ;;
        redis|redis-direct)
            rport=$(free_port)
            redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
                --dir "$WORK" >"$WORK/redis-$label.log" 2>&1 &
            PIDS+=("$!")
            wait_port "$rport" || { echo "redis-server did not start" >&2; exit 1; }
            redis_cfg="url: \"redis://127.0.0.1:$rport/0\""
            [[ "$storage" == redis-direct ]] && redis_cfg+=", local_size: 0"
            [[ -n "${REDIS_TIMEOUT:-}" ]] && redis_cfg+=", timeout: $REDIS_TIMEOUT"
            cache_cfg="  storage: redis
  redis: { $redis_cfg }" ;;
        *) echo "unknown storage $storage (memory, redis, redis-direct)" >&2; exit 2 ;;
    esac
    mkdir -p "$WORK/$label"
    cat >"$WORK/$label/edgeward.yaml" <<YAML
listen: ["127.0.0.1:$port"]
cache:
$cache_cfg
accounts:
  conformance:
    log_dir: "$WORK/$label/logs"
    sites:
      suite:
        addresses: ["127.0.0.1"]
        upstream: { address: "127.0.0.1:$ORIGIN_PORT" }
        cache: { enabled: true$site_extra }
YAML
    RUST_LOG=warn "$BIN" run -c "$WORK/$label/edgeward.yaml" >"$WORK/$label/edgeward.log" 2>&1 &
    ew=$!
    PIDS+=("$ew")
    wait_port "$port" || { cat "$WORK/$label/edgeward.log" >&2; exit 1; }
    settings="product defaults${changed:+ except$changed}"
    [[ "$storage" == redis-direct ]] && settings+=", local_size: 0"
    echo "== cache-tests: $label ($settings)" >&2
    out="$OUT_DIR/cache-tests-$label.json"
    line=$(CACHE_TESTS_DIR="$SUITE" "$KIT/run-suite.sh" "http://127.0.0.1:$port" "$out") || line=""
    echo "$label: ${line:-no score line (run-suite.sh failed)}"
    kill "$ew"; wait "$ew" 2>/dev/null || true
    if [[ "$line" =~ passed\ ([0-9]+)\ of\ [0-9]+\ \(required:\ ([0-9]+)\ of ]]; then
        if (( BASH_REMATCH[1] < MIN_PASSED || BASH_REMATCH[2] < MIN_REQUIRED )); then
            echo "$label: below the floor ($MIN_PASSED passed, $MIN_REQUIRED required); edgeward log: $WORK/$label/edgeward.log" >&2
            [[ "${REPORT_ONLY:-0}" == 1 ]] || failed=1
        fi
    else
        [[ "${REPORT_ONLY:-0}" == 1 ]] || failed=1
        continue
    fi
    # Which tests failed, against the known-failures file (written for the
    # product defaults; other settings are only listed).
    if [[ -z "$changed" ]]; then
        if ! node "$ROOT/tests/conformance/cache-tests-failures.mjs" "$SUITE" "$out" "$KNOWN" | sed "s/^/$label: /"; then
            [[ "${STRICT_KNOWN:-0}" == 1 ]] && failed=1
        fi
    else
        node "$ROOT/tests/conformance/cache-tests-failures.mjs" "$SUITE" "$out" | sed "s/^/$label: /" || true
    fi
done
echo "results in $OUT_DIR" >&2
exit "$failed"
