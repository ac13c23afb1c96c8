#!/usr/bin/env bash
# HTTP caching conformance (github.com/http-tests/cache-tests) of edgeward's
# cache, with each storage, through the kit in ../shared/tools/cache-tests.
#
# usage: tests/conformance/cache-tests.sh [memory|redis|redis-direct ...]
#        (default: all three; redis-direct = Redis without the near cache,
#        cache.redis.local_size: 0, every lookup a round trip)
# env:
#   CACHE_TESTS_DIR  suite checkout with `npm install --omit=dev` done (the
#                    suite is never part of this repository; see the kit's README)
#   KIT              the kit (default ../shared/tools/cache-tests)
#   CARGO_TARGET_DIR as for cargo; the debug binary is used
#   OUT_DIR          where result JSON files go (default: a temp dir, printed)
#   REDIS_TIMEOUT    cache.redis.timeout (default 250ms: the suite measures HTTP
#                    semantics; on a busy 2-core machine the product default of
#                    50ms turns some hits into misses)
#   STORE_SET_COOKIE the site's cache.store_set_cookie (default true: RFC 9111
#                    allows storing Set-Cookie; the product default is false)
#   MIN_PASSED, MIN_REQUIRED  floors (default 215 and 145, issue 5's goal): the
#                    script fails when a storage scores below either
# Prints one score line per storage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="${KIT:-$ROOT/../shared/tools/cache-tests}"
SUITE="${CACHE_TESTS_DIR:-${TMPDIR:-/tmp}/cache-tests}"
STORAGES=("$@"); (( ${#STORAGES[@]} )) || STORAGES=(memory redis redis-direct)
[[ -x "$KIT/run-suite.sh" ]] || { echo "no kit at $KIT" >&2; exit 2; }
[[ -f "$SUITE/tests/index.mjs" ]] || { echo "no suite at $SUITE (set CACHE_TESTS_DIR)" >&2; exit 2; }

(cd "$ROOT" && cargo build --quiet --bin edgeward)
WORK="$(mktemp -d)"
# A copy: a shared target dir may be rebuilt from another branch meanwhile.
BIN="$WORK/edgeward"
cp "${CARGO_TARGET_DIR:-$ROOT/target}/debug/edgeward" "$BIN"
OUT_DIR="${OUT_DIR:-$WORK}"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 100); do listening "$1" && return 0; sleep 0.05; done; return 1; }

for storage in "${STORAGES[@]}"; do
    port=$(free_port)
    case "$storage" in
        memory) cache_cfg="  storage: memory" ;;
        redis|redis-direct)
            local_size=""
            [[ "$storage" == redis-direct ]] && local_size=", local_size: 0"
            rport=$(free_port)
            redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
                --dir "$WORK" >"$WORK/redis.log" 2>&1 &
            PIDS+=("$!")
            wait_port "$rport" || { echo "redis-server did not start" >&2; exit 1; }
            cache_cfg="  storage: redis
  redis: { url: \"redis://127.0.0.1:$rport/0\", key_prefix: \"conformance:\", timeout: ${REDIS_TIMEOUT:-250ms}$local_size }" ;;
        *) echo "unknown storage $storage" >&2; exit 2 ;;
    esac
    mkdir -p "$WORK/$storage"
    cat >"$WORK/$storage/edgeward.yaml" <<YAML
listen: ["127.0.0.1:$port"]
threads: 2
cache:
$cache_cfg
accounts:
  conformance:
    log_dir: "$WORK/$storage/logs"
    sites:
      suite:
        addresses: ["127.0.0.1"]
        upstream: { address: "127.0.0.1:${ORIGIN_PORT:-8000}" }
        cache: { enabled: true, store_set_cookie: ${STORE_SET_COOKIE:-true} }
        access_log: { enabled: false }
YAML
    RUST_LOG=warn "$BIN" run -c "$WORK/$storage/edgeward.yaml" >"$WORK/$storage/edgeward.log" 2>&1 &
    ew=$!
    PIDS+=("$ew")
    wait_port "$port" || { cat "$WORK/$storage/edgeward.log" >&2; exit 1; }
    echo "== storage: $storage" >&2
    line=$(CACHE_TESTS_DIR="$SUITE" "$KIT/run-suite.sh" "http://127.0.0.1:$port" \
        "$OUT_DIR/cache-tests-$storage.json")
    echo "$storage: $line"
    kill "$ew"; wait "$ew" 2>/dev/null || true
    if [[ "$line" =~ passed\ ([0-9]+)\ of\ [0-9]+\ \(required:\ ([0-9]+)\ of ]]; then
        if (( BASH_REMATCH[1] < ${MIN_PASSED:-215} || BASH_REMATCH[2] < ${MIN_REQUIRED:-145} )); then
            echo "$storage: below the floor (${MIN_PASSED:-215} passed, ${MIN_REQUIRED:-145} required); edgeward log: $WORK/$storage/edgeward.log" >&2
            failed=1
        fi
    else
        echo "$storage: no score line" >&2
        failed=1
    fi
done
echo "results in $OUT_DIR" >&2
exit "${failed:-0}"
