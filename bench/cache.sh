#!/usr/bin/env bash
# Cache-hit throughput: edgeward (memory, Redis with and without its near
# cache) vs nginx proxy_cache and Varnish, for 10 KiB and 100 KiB objects.
# Also measured: pingora-static (bench/pingora_static.rs), a Pingora server
# answering every request with a response built at start-up: the ceiling of
# anything built on Pingora's HTTP stack, edgeward included.
#
# One nginx origin serves the objects with `Cache-Control: max-age=3600`; each
# cache is warmed (and checked to answer from its cache), then loaded with wrk
# in interleaved rounds (edgeward-memory, edgeward-redis, nginx, varnish, ...).
# Prints a markdown report to stdout; progress goes to stderr.
#
# Usage: bench/cache.sh [--edgeward PATH] [--threads N] [--duration SECONDS]
#                       [--rounds R] [--connections C] [--wrk-threads N]
#                       [--warmup SECONDS] [--sizes "10 100"] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/cache.sh [options]

  --edgeward PATH       edgeward binary (default: target/release/edgeward;
                        built by scripts/build if missing)
  --threads N           edgeward threads = nginx worker_processes = varnish
                        thread pools (default 1)
  --duration SECONDS    duration of each measured wrk run (default 10)
  --rounds R            interleaved rounds (default 4)
  --connections C       wrk connections (default 50)
  --wrk-threads N       wrk threads (default 2)
  --warmup SECONDS      warm-up run per cache and size (default 2)
  --sizes "KIB..."      object sizes in KiB (default "10 100")
  --clean               delete the work dir at the end instead of keeping it
  -h, --help            this help
EOF
}

BENCH_TAG=cache-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

EDGEWARD=""
THREADS=1
DURATION=10
ROUNDS=4
CONNS=50
WRK_THREADS=2
WARMUP=2
SIZES="10 100"
CLEAN=0

while (( $# )); do
    case "$1" in
        --edgeward)    EDGEWARD=${2:?--edgeward needs a path}; shift 2 ;;
        --threads)     THREADS=${2:?--threads needs a value}; shift 2 ;;
        --duration)    DURATION=${2:?--duration needs a value}; shift 2 ;;
        --rounds)      ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --connections) CONNS=${2:?--connections needs a value}; shift 2 ;;
        --wrk-threads) WRK_THREADS=${2:?--wrk-threads needs a value}; shift 2 ;;
        --warmup)      WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --sizes)       SIZES=${2:?--sizes needs a value}; shift 2 ;;
        --clean)       CLEAN=1; shift ;;
        -h|--help)     usage; exit 0 ;;
        *)             usage >&2; die "unknown argument: $1" ;;
    esac
done

is_uint "$THREADS"     || die "--threads must be a positive integer"
is_uint "$DURATION"    || die "--duration must be a positive integer (seconds)"
is_uint "$ROUNDS"      || die "--rounds must be a positive integer"
is_uint "$CONNS"       || die "--connections must be a positive integer"
is_uint "$WRK_THREADS" || die "--wrk-threads must be a positive integer"
(( CONNS >= WRK_THREADS )) || die "--connections must be >= --wrk-threads"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"
read -r -a SIZE_LIST <<<"$SIZES"
(( ${#SIZE_LIST[@]} > 0 )) || die "--sizes must not be empty"
for s in "${SIZE_LIST[@]}"; do is_uint "$s" || die "--sizes: '$s' is not a positive integer"; done

# ---------------------------------------------------------------- tools
need_install=()
have wrk          || need_install+=(wrk)
have curl         || need_install+=(curl)
have nginx        || need_install+=(nginx-light)
have varnishd     || need_install+=(varnish)
have redis-server || need_install+=(redis-server)
install_missing "${need_install[@]}"
command -v python3 >/dev/null 2>&1 || die "python3 is required (used to pick free ports)"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
VARNISHD=$(command -v varnishd 2>/dev/null || echo /usr/sbin/varnishd)

# ---------------------------------------------------------------- edgeward binary
cd "$REPO_ROOT"
resolve_edgeward "$EDGEWARD"
PINGORA_STATIC="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/examples/pingora-static"
if [[ ! -x "$PINGORA_STATIC" ]]; then
    log "$PINGORA_STATIC missing; running scripts/build --example pingora-static"
    scripts/build --example pingora-static >&2
fi

# ---------------------------------------------------------------- work dir + cleanup
make_workdir cache-bench   # nginx and varnish workers drop privileges
bench_traps

read -r UP_PORT EWM_PORT EWR_PORT EWD_PORT NX_PORT VA_PORT RD_PORT PS_PORT < <(free_ports 8)
[[ -n "${PS_PORT:-}" ]] || die "could not pick free ports"
log "work dir $WORK"

USER_DIRECTIVE=""
[[ $EUID -eq 0 ]] && USER_DIRECTIVE="user $(id -un) $(id -gn);"

nginx_conf() {   # DIR WORKERS SERVER-BLOCKS
    cat <<EOF
$USER_DIRECTIVE
worker_processes $2;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
$3
}
EOF
}

# ---------------------------------------------------------------- origin
UP_DIR="$WORK/origin"
mkdir -p "$UP_DIR/tmp" "$UP_DIR/www"
for s in "${SIZE_LIST[@]}"; do
    head -c $(( s * 1024 )) /dev/zero | tr '\0' 'x' >"$UP_DIR/www/obj${s}k.txt"
done
chmod -R a+rX "$UP_DIR"
nginx_conf "$UP_DIR" 1 "
    server {
        listen 127.0.0.1:$UP_PORT;
        root $UP_DIR/www;
        location / { add_header Cache-Control \"max-age=3600\"; }
    }" >"$UP_DIR/nginx.conf"
start_bg origin "$NGINX" -p "$UP_DIR" -e "$UP_DIR/error.log" -c "$UP_DIR/nginx.conf"
wait_ready origin "$LAST_PID" "http://127.0.0.1:$UP_PORT/obj${SIZE_LIST[0]}k.txt" bench.local 10

# ---------------------------------------------------------------- redis
start_bg redis redis-server --port "$RD_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$RD_PORT") 2>/dev/null && break; sleep 0.05; done

# ---------------------------------------------------------------- edgeward x3
edgeward_conf() {   # PORT CACHE-SECTION
    cat <<EOF
listen: ["127.0.0.1:$1"]
threads: $THREADS
grace_period: 1s
cache:
$2
accounts:
  bench:
    log_dir: $WORK/logs
    sites:
      site:
        addresses: ["bench.local"]
        upstream: { address: "127.0.0.1:$UP_PORT" }
        cache: { enabled: true }
        access_log: { enabled: false }
EOF
}
mkdir -p "$WORK/edgeward-memory" "$WORK/edgeward-redis" "$WORK/edgeward-redis-direct"
edgeward_conf "$EWM_PORT" "  storage: memory" >"$WORK/edgeward-memory/edgeward.yaml"
edgeward_conf "$EWR_PORT" "  storage: redis
  redis: { url: \"redis://127.0.0.1:$RD_PORT/0\", key_prefix: \"bench:\" }" >"$WORK/edgeward-redis/edgeward.yaml"
# The same without the near cache: every hit a Redis round trip.
edgeward_conf "$EWD_PORT" "  storage: redis
  redis: { url: \"redis://127.0.0.1:$RD_PORT/0\", key_prefix: \"bench-direct:\", local_size: 0 }" >"$WORK/edgeward-redis-direct/edgeward.yaml"
start_bg edgeward-memory env RUST_LOG=warn "$EDGEWARD" run -c "$WORK/edgeward-memory/edgeward.yaml"
EWM_PID=$LAST_PID
start_bg edgeward-redis env RUST_LOG=warn "$EDGEWARD" run -c "$WORK/edgeward-redis/edgeward.yaml"
EWR_PID=$LAST_PID
start_bg edgeward-redis-direct env RUST_LOG=warn "$EDGEWARD" run -c "$WORK/edgeward-redis-direct/edgeward.yaml"
EWD_PID=$LAST_PID

# ---------------------------------------------------------------- nginx proxy_cache
NX_DIR="$WORK/nginx"
mkdir -p "$NX_DIR/tmp" "$NX_DIR/cache"
nginx_conf "$NX_DIR" "$THREADS" "
$(nginx_cache_http "$NX_DIR")
    upstream origin { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }" >"$NX_DIR/nginx.conf"
start_bg nginx "$NGINX" -p "$NX_DIR" -e "$NX_DIR/error.log" -c "$NX_DIR/nginx.conf"
NX_PID=$LAST_PID

# ---------------------------------------------------------------- varnish
VA_DIR="$WORK/varnish"
mkdir -p "$VA_DIR"
chmod 755 "$VA_DIR"
# thread_pools does not bound the cores Varnish's (many) threads run on:
# limited to as many CPUs as the others' threads (taskset).
VA_NCPU=$THREADS; (( VA_NCPU <= $(nproc) )) || VA_NCPU=$(nproc)
VA_CPUS="0-$(( VA_NCPU - 1 ))"
start_bg varnish taskset -c "$VA_CPUS" "$VARNISHD" -F -n "$VA_DIR" -a "127.0.0.1:$VA_PORT" -b "127.0.0.1:$UP_PORT" \
    -s malloc,256m -p "thread_pools=$THREADS"
VA_PID=$LAST_PID

# ---------------------------------------------------------------- pingora-static
start_bg pingora-static "$PINGORA_STATIC" "127.0.0.1:$PS_PORT" "$THREADS" "${SIZE_LIST[@]}"
PS_PID=$LAST_PID

NAMES=(edgeward-memory edgeward-redis edgeward-redis-direct nginx varnish pingora-static)
declare -A PORT=([edgeward-memory]=$EWM_PORT [edgeward-redis]=$EWR_PORT [edgeward-redis-direct]=$EWD_PORT [nginx]=$NX_PORT [varnish]=$VA_PORT [pingora-static]=$PS_PORT)
declare -A PID=([edgeward-memory]=$EWM_PID [edgeward-redis]=$EWR_PID [edgeward-redis-direct]=$EWD_PID [nginx]=$NX_PID [varnish]=$VA_PID [pingora-static]=$PS_PID)
for p in "${NAMES[@]}"; do
    wait_ready "$p" "${PID[$p]}" "http://127.0.0.1:${PORT[$p]}/obj${SIZE_LIST[0]}k.txt" bench.local 30
done

# ---------------------------------------------------------------- warm + check hits
for s in "${SIZE_LIST[@]}"; do
    for p in "${NAMES[@]}"; do
        url="http://127.0.0.1:${PORT[$p]}/obj${s}k.txt"
        ok=0
        for _ in 1 2 3 4 5; do
            size=$(curl -s -o /dev/null -w '%{size_download}' -D "$RAW/hdr-$p-$s.txt" -H 'Host: bench.local' "$url") || size=0
            if [[ "$size" == $(( s * 1024 )) ]] && is_cache_hit "$p" "$RAW/hdr-$p-$s.txt"; then ok=1; break; fi
            sleep 0.1
        done
        (( ok )) || { cat "$RAW/hdr-$p-$s.txt" >&2; die "$p does not answer obj${s}k.txt from its cache"; }
    done
done

run_wrk_at() {   # PROXY SIZE DURATION OUT
    run_wrk "$1" "${PID[$1]}" "$4" -t"$WRK_THREADS" -c"$CONNS" -d"$3s" --latency \
        -H 'Host: bench.local' "http://127.0.0.1:${PORT[$1]}/obj$2k.txt"
}

if (( WARMUP > 0 )); then
    for s in "${SIZE_LIST[@]}"; do
        for p in "${NAMES[@]}"; do
            log "warm-up: $p ${s}KiB ${WARMUP}s"
            run_wrk_at "$p" "$s" "$WARMUP" "$RAW/warmup-$p-$s.txt"
        done
    done
fi

declare -A RPS P50 P99 ERRS
for s in "${SIZE_LIST[@]}"; do
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in "${NAMES[@]}"; do
            out="$RAW/s$s-$p-r$r.txt"
            log "measure: ${s}KiB round $r/$ROUNDS $p (${DURATION}s)"
            run_wrk_at "$p" "$s" "$DURATION" "$out"
            parsed=$(parse_wrk "$out"); read -r rps p50 p99 errs _ <<<"$parsed"
            RPS[$s,$p]+="$rps "; P50[$s,$p]+="$p50 "; P99[$s,$p]+="$p99 "
            ERRS[$s,$p]=$(( ${ERRS[$s,$p]:-0} + errs ))
        done
    done
done

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo "## Cache-hit benchmark: edgeward (memory, Redis) vs nginx proxy_cache and Varnish"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "- nproc: $(nproc); cpu: ${cpu_model:-unknown}; kernel: $(uname -sr)"
echo "- nginx: $("$NGINX" -v 2>&1 | head -n1); varnish: $("$VARNISHD" -V 2>&1 | head -n1); redis: $(redis-server --version | awk '{print $3}')"
echo "- edgeward: $("$EDGEWARD" --version 2>&1 | head -n1) ($EDGEWARD)"
echo "- nginx proxy_cache: sendfile on, tcp_nopush off, open_file_cache max=1000 (valid 60s); Varnish: thread_pools=$THREADS, taskset -c $VA_CPUS"
echo "- setup: threads/workers/pools=$THREADS, wrk -t$WRK_THREADS -c$CONNS, ${DURATION}s per run, $ROUNDS interleaved round(s), ${WARMUP}s warm-up; every response a cache hit; all on 127.0.0.1"
echo
echo "| object | cache | req/s (median) | p50 ms | p99 ms | errors |"
echo "|-------:|:------|---------------:|-------:|-------:|-------:|"
for s in "${SIZE_LIST[@]}"; do
    for p in "${NAMES[@]}"; do
        # shellcheck disable=SC2086
        printf '| %s KiB | %s | %.0f | %.3f | %.3f | %s |\n' "$s" "$p" \
            "$(median ${RPS[$s,$p]})" "$(median ${P50[$s,$p]})" "$(median ${P99[$s,$p]})" "${ERRS[$s,$p]}"
    done
done
echo
echo "| object | memory/nginx | redis/nginx | redis-direct/nginx | memory/varnish | redis/varnish | redis-direct/varnish | pingora-static/nginx | memory/pingora-static |"
echo "|-------:|-------------:|------------:|-------------------:|---------------:|--------------:|---------------------:|---------------------:|----------------------:|"
for s in "${SIZE_LIST[@]}"; do
    # shellcheck disable=SC2086  # intentional word splitting of the value lists
    m=$(median ${RPS[$s,edgeward-memory]})
    # shellcheck disable=SC2086
    rd=$(median ${RPS[$s,edgeward-redis]})
    # shellcheck disable=SC2086
    dd=$(median ${RPS[$s,edgeward-redis-direct]})
    # shellcheck disable=SC2086
    n=$(median ${RPS[$s,nginx]})
    # shellcheck disable=SC2086
    v=$(median ${RPS[$s,varnish]})
    # shellcheck disable=SC2086
    ps=$(median ${RPS[$s,pingora-static]})
    printf '| %s KiB | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" "$(ratio "$m" "$n")" "$(ratio "$rd" "$n")" \
        "$(ratio "$dd" "$n")" "$(ratio "$m" "$v")" "$(ratio "$rd" "$v")" "$(ratio "$dd" "$v")" \
        "$(ratio "$ps" "$n")" "$(ratio "$m" "$ps")"
done
echo
# The same ratios round by round: each pair was measured minutes apart at
# most, so the spread shows how much of a ratio is the machine's noise (on
# a shared VM, one server's req/s moves by up to 15 % from round to round).
echo "Round by round (each ratio from the same round's runs; median, then every round):"
echo
echo "| object | ratio | median | min | max | rounds |"
echo "|-------:|:------|-------:|----:|----:|:-------|"
for s in "${SIZE_LIST[@]}"; do
    for pair in "edgeward-memory nginx memory/nginx" "edgeward-redis nginx redis/nginx" \
        "pingora-static nginx pingora-static/nginx" "edgeward-memory pingora-static memory/pingora-static"; do
        read -r a b label <<<"$pair"
        printf '| %s KiB | %s | %s |\n' "$s" "$label" "$(round_ratios "${RPS[$s,$a]}" "${RPS[$s,$b]}")"
    done
done
echo
echo "pingora-static answers every request from \`request_filter\` with a response built at start-up (bench/pingora_static.rs): pingora-static/nginx is the most any server on Pingora's HTTP stack can reach here; memory/pingora-static is how close edgeward's cache hits come to it."
echo
SUCCESS=1
if (( CLEAN )); then echo "Raw wrk output deleted (--clean)."; else echo "Raw wrk output, configs and logs: \`$WORK\`"; fi
