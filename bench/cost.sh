#!/usr/bin/env bash
# Cost per request, side by side: nginx, edgeward, pingora-static (Pingora
# answering from request_filter), pingora-proxy-min (a Pingora proxy with only
# upstream_peer) and, when its binary is there, Pingap; 1 KiB answers, the
# proxies in front of the same nginx origin serving a 1 KiB file.
#
# Per request, for each server (one worker/thread each):
#   - user-space instructions (Ir), counted by valgrind's callgrind over a
#     fixed number of requests (exact, insensitive to other load; this VM
#     has no PMU, so `perf stat -e instructions` is not available);
#   - system calls (strace -c -f over a fixed number of requests), with the
#     most frequent ones;
#   - context switches and CPU time (perf stat -e task-clock,context-switches
#     on the native process; the CPU time is shown for reference only, it
#     moves with the machine's load).
# The servers run pinned to CPU 0 (taskset), wrk and the origin to CPU 1.
# With --hit STORAGE, the answers are cache hits instead: the origin sends
# `Cache-Control: max-age=3600`, edgeward caches the site in STORAGE (memory,
# or redis: a redis-server started here, hits from the near cache as with the
# defaults), nginx answers from proxy_cache (as bench/cache.sh sets it up),
# and pingora-static answers from memory; each server's answers are checked
# to be hits before anything is counted.
# Prints a markdown report on stdout; progress on stderr. See bench/README.md.
#
# Usage: bench/cost.sh [--edgeward PATH] [--bin-dir DIR] [--pingap PATH]
#                      [--servers "nginx edgeward ..."] [--connections C]
#                      [--native-seconds S] [--ir-seconds S] [--strace-seconds S]
#                      [--hit memory|redis] [--body-kib N]
#                      [--no-callgrind] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/cost.sh [options]

  --edgeward PATH        edgeward binary (default: target/release/edgeward)
  --bin-dir DIR          take edgeward, pingora-static and pingora-proxy-min
                         from DIR (default: target/release and
                         target/release/examples)
  --pingap PATH          Pingap binary (default: `pingap` on PATH or in
                         ~/.cargo/bin, else measured without it)
  --servers "S..."       servers to measure, in this order (default: nginx
                         edgeward pingora-static pingora-proxy-min pingap)
  --connections C        wrk connections (default 16; wrk -t1)
  --hit STORAGE          answers from the cache instead of proxied: edgeward
                         with its cache in STORAGE (memory or redis), nginx
                         with proxy_cache, pingora-static; the default
                         servers are then "nginx edgeward pingora-static"
                         (the others do not cache)
  --body-kib N           size of the answer in KiB (default 1)
  --native-seconds S     native run (CPU time, context switches; default 5)
  --ir-seconds S         run counted under callgrind (default 10)
  --strace-seconds S     run counted under strace (default 3)
  --no-callgrind         skip the instruction counts
  --clean                delete the work dir at the end
  -h, --help             this help
EOF
}

BENCH_TAG=cost-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

EDGEWARD=""
BIN_DIR=""
PINGAP=""
SERVERS=""
HIT=""
BODY_KIB=1
CONNS=16
NATIVE_S=5
IR_S=10
STRACE_S=3
CALLGRIND=1
SERVER_CPU=0
CLIENT_CPU=1

while (( $# )); do
    case "$1" in
        --edgeward)        EDGEWARD=${2:?--edgeward needs a path}; shift 2 ;;
        --bin-dir)         BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
        --pingap)          PINGAP=${2:?--pingap needs a path}; shift 2 ;;
        --servers)         SERVERS=${2:?--servers needs a list}; shift 2 ;;
        --connections)     CONNS=${2:?--connections needs a value}; shift 2 ;;
        --hit)             HIT=${2:?--hit needs memory or redis}; shift 2 ;;
        --body-kib)        BODY_KIB=${2:?--body-kib needs a value}; shift 2 ;;
        --native-seconds)  NATIVE_S=${2:?--native-seconds needs a value}; shift 2 ;;
        --ir-seconds)      IR_S=${2:?--ir-seconds needs a value}; shift 2 ;;
        --strace-seconds)  STRACE_S=${2:?--strace-seconds needs a value}; shift 2 ;;
        --no-callgrind)    CALLGRIND=0; shift ;;
        --clean)           CLEAN=1; shift ;;
        -h|--help)         usage; exit 0 ;;
        *)                 usage >&2; die "unknown argument: $1" ;;
    esac
done
for v in CONNS NATIVE_S IR_S STRACE_S BODY_KIB; do
    is_uint "${!v}" || die "${v,,} must be a positive integer"
done
(( $(nproc) >= 2 )) || { SERVER_CPU=0; CLIENT_CPU=0; }
case "$HIT" in
    "")           [[ -n "$SERVERS" ]] || SERVERS="nginx edgeward pingora-static pingora-proxy-min pingap" ;;
    memory|redis) [[ -n "$SERVERS" ]] || SERVERS="nginx edgeward pingora-static" ;;
    *)            die "--hit takes memory or redis, not '$HIT'" ;;
esac

# ---------------------------------------------------------------- tools
need_install=()
have wrk      || need_install+=(wrk)
have curl     || need_install+=(curl)
have nginx    || need_install+=(nginx-light)
have strace   || need_install+=(strace)
have perf     || need_install+=(linux-perf)
have valgrind || need_install+=(valgrind)
[[ "$HIT" != redis ]] || have redis-server || need_install+=(redis-server)
install_missing "${need_install[@]}"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

cd "$REPO_ROOT"
if [[ -n "$BIN_DIR" ]]; then
    [[ "$BIN_DIR" = /* ]] || BIN_DIR="$ORIG_PWD/$BIN_DIR"
    [[ -n "$EDGEWARD" ]] || EDGEWARD="$BIN_DIR/edgeward"
    EX_DIR=$BIN_DIR
else
    EX_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/examples"
fi
resolve_edgeward "$EDGEWARD"
PINGORA_STATIC="$EX_DIR/pingora-static"
PINGORA_MIN="$EX_DIR/pingora-proxy-min"
PINGAP=$(find_pingap "$PINGAP")

read -r -a LIST <<<"$SERVERS"
NAMES=()
for s in "${LIST[@]}"; do
    case "$s" in
        pingora-proxy-min|pingap) [[ -z "$HIT" ]] || die "$s does not cache: not measured with --hit" ;;
    esac
    case "$s" in
        nginx|edgeward) NAMES+=("$s") ;;
        pingora-static) [[ -x "$PINGORA_STATIC" ]] || die "$PINGORA_STATIC missing: scripts/build --example pingora-static"; NAMES+=("$s") ;;
        pingora-proxy-min) [[ -x "$PINGORA_MIN" ]] || die "$PINGORA_MIN missing: scripts/build --example pingora-proxy-min"; NAMES+=("$s") ;;
        pingap)
            if [[ -n "$PINGAP" && -x "$PINGAP" ]]; then NAMES+=("$s")
            else log "no pingap binary (--pingap PATH or on PATH): measured without it"; fi ;;
        *) die "unknown server '$s'" ;;
    esac
done
(( ${#NAMES[@]} )) || die "no server to measure"

make_workdir cost-bench
bench_traps

read -r UP_PORT PORT RD_PORT < <(free_ports 3)
log "work dir $WORK; origin port $UP_PORT, server port $PORT"
PATH_1K=/obj${BODY_KIB}k.txt
BODY_LEN=$(( BODY_KIB * 1024 ))
ORIGIN_EXTRA=""
[[ -z "$HIT" ]] || ORIGIN_EXTRA='location / { add_header Cache-Control "max-age=3600"; }'

# ---------------------------------------------------------------- origin (CPU 1)
UP_DIR="$WORK/origin"
mkdir -p "$UP_DIR/tmp" "$UP_DIR/www"
head -c "$BODY_LEN" /dev/zero | tr '\0' 'x' >"$UP_DIR/www${PATH_1K}"
chmod -R a+rX "$UP_DIR"
{
    nginx_main "$UP_DIR" 1
    echo "http {"
    nginx_http_common "$UP_DIR"
    cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT;
        root $UP_DIR/www;
        $ORIGIN_EXTRA
    }
}
EOF
} >"$UP_DIR/nginx.conf"
start_bg origin taskset -c "$CLIENT_CPU" "$NGINX" -p "$UP_DIR" -e "$UP_DIR/error.log" -c "$UP_DIR/nginx.conf"
wait_ready origin "$LAST_PID" "http://127.0.0.1:$UP_PORT$PATH_1K" localhost 10

# ---------------------------------------------------------------- server configs
# nginx as in bench/proxy.sh, but one process (master_process off) so that
# valgrind and strace see the worker itself.
NX_DIR="$WORK/nginx"
mkdir -p "$NX_DIR/tmp" "$NX_DIR/cache"
NX_CACHE=""
[[ -z "$HIT" ]] || NX_CACHE=$(nginx_cache_http "$NX_DIR")
{
    nginx_main "$NX_DIR" 1 | sed 's/^master_process on;/master_process off;/'
    echo "http {"
    nginx_http_common "$NX_DIR"
    cat <<EOF
$NX_CACHE
$(nginx_proxy_upstream "$UP_PORT")
    server {
        listen 127.0.0.1:$PORT;
        server_name bench.local;
$(nginx_proxy_location)
    }
}
EOF
} >"$NX_DIR/nginx.conf"

EW_DIR="$WORK/edgeward"
mkdir -p "$EW_DIR" "$WORK/logs/bench"
EW_CACHE=""
EW_SITE_CACHE=""
case "$HIT" in
    memory) EW_CACHE=$'cache:\n  storage: memory' ;;
    redis)  EW_CACHE=$'cache:\n  storage: redis\n  redis: { url: "redis://127.0.0.1:'"$RD_PORT"$'/0", key_prefix: "cost:" }'
            start_bg redis redis-server --port "$RD_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK"
            deadline=$(( SECONDS + 10 ))
            until (exec 3<>"/dev/tcp/127.0.0.1/$RD_PORT") 2>/dev/null; do
                (( SECONDS < deadline )) || die "redis-server did not start"
                sleep 0.05
            done ;;
esac
[[ -z "$HIT" ]] || EW_SITE_CACHE="        cache: { enabled: true }"
cat >"$EW_DIR/edgeward.yaml" <<EOF
listen: ["127.0.0.1:$PORT"]
threads: 1
grace_period: 1s
$EW_CACHE
accounts:
  bench:
    log_dir: $WORK/logs/bench
    sites:
      site:
        addresses: ["bench.local"]
        upstream:
          address: "127.0.0.1:$UP_PORT"
        access_log: { enabled: false }
$EW_SITE_CACHE
EOF

PG_DIR="$WORK/pingap"
mkdir -p "$PG_DIR"
pingap_conf "$PG_DIR/pingap.toml" "$PORT" "$UP_PORT" 1

# server_cmd NAME: the command line of server NAME (one worker/thread).
server_cmd() {
    case "$1" in
        nginx)             CMD=("$NGINX" -p "$NX_DIR" -e "$NX_DIR/error.log" -c "$NX_DIR/nginx.conf") ;;
        edgeward)          CMD=("$EDGEWARD" run -c "$EW_DIR/edgeward.yaml") ;;
        pingora-static)    CMD=("$PINGORA_STATIC" "127.0.0.1:$PORT" 1 "$BODY_KIB") ;;
        pingora-proxy-min) CMD=("$PINGORA_MIN" "127.0.0.1:$PORT" 1 "127.0.0.1:$UP_PORT") ;;
        pingap)            CMD=("$PINGAP" -c "$PG_DIR/pingap.toml") ;;
    esac
}

# The server's process (env, taskset and valgrind exec: one pid throughout).
SERVER_PID=""
start_server() {   # NAME [valgrind args...]
    local name=$1; shift
    server_cmd "$name"
    start_bg "$name" env RUST_LOG=warn taskset -c "$SERVER_CPU" "$@" "${CMD[@]}"
    SERVER_PID=$LAST_PID
    wait_ready "$name" "$SERVER_PID" "http://127.0.0.1:$PORT$PATH_1K" bench.local "${READY_TIMEOUT:-30}"
    body=$(curl -s --max-time 5 -H 'Host: bench.local' "http://127.0.0.1:$PORT$PATH_1K")
    [[ ${#body} == "$BODY_LEN" ]] || die "$name answered ${#body} bytes instead of $BODY_LEN"
    [[ -z "$HIT" ]] || check_hit "$name"
}
# check_hit NAME: with --hit, the server's answer is a hit from its cache
# (the first request above stored it), checked in its header.
check_hit() {
    local name=$1 hdr="$RAW/$1-hit-header.txt" _
    for _ in 1 2 3 4 5; do
        curl -s -o /dev/null -D "$hdr" --max-time 5 -H 'Host: bench.local' "http://127.0.0.1:$PORT$PATH_1K" || true
        is_cache_hit "$name" "$hdr" && return 0
        sleep 0.1
    done
    cat "$hdr" >&2
    die "$name does not answer $PATH_1K from its cache"
}
stop_server() {
    stop_pid "$SERVER_PID"
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$SERVER_PID" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    SERVER_PID=""
}

# load NAME SECONDS OUT: wrk -t1 -cCONNS for SECONDS (on the client CPU);
# prints the requests it completed. (A fixed count, stopping wrk from its Lua
# script with SIGINT, hung now and then: the signal can reach wrk's worker
# thread instead of its main one, which sleeps for -d regardless.) The
# requests still in flight when wrk stops, at most CONNS, are served but not
# counted: under 0.5 % with the defaults.
load() {
    run_wrk "$1" "$SERVER_PID" "$3" taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$2s" \
        -H 'Host: bench.local' "http://127.0.0.1:$PORT$PATH_1K"
    local completed
    completed=$(awk '/ requests in / { print $1; exit }' "$3")
    [[ -n "$completed" && "$completed" -gt 0 ]] || { cat "$3" >&2; die "no request done against $1"; }
    if grep -q 'Non-2xx' "$3"; then cat "$3" >&2; die "$1 answered errors"; fi
    echo "$completed"
}
run_wrk() {   # as lib.sh's, with the command given whole (taskset + wrk)
    local name=$1 pid=$2 out=$3
    shift 3
    kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) died during the benchmark; see $WORK/$name.log"
    "$@" </dev/null >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { WRK_PID=""; cat "$out" >&2; die "wrk failed against $name"; }
    WRK_PID=""
}

declare -A IR IRN CS CPU SC SCTOP USR SYS MINFLT
HZ=$(getconf CLK_TCK)
# utime and stime (clock ticks, all threads) and minor page faults of a
# process, from /proc/PID/stat (fields 14, 15 and 10, counted after the command name, which may hold spaces).
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    awk '{ print $12, $13, $8 }' <<<"$stat"
}
for name in "${NAMES[@]}"; do
    # ---- native: CPU time and context switches, then syscalls
    log "$name: native run (${NATIVE_S}s)"
    start_server "$name"
    load "$name" 1 "$RAW/$name-warmup.txt" >/dev/null
    perf stat -x, -e task-clock,context-switches -p "$SERVER_PID" -o "$RAW/$name-perf.csv" &
    perf_pid=$!
    read -r ut0 st0 mf0 < <(cpu_ticks "$SERVER_PID")
    n=$(load "$name" "$NATIVE_S" "$RAW/$name-native.txt")
    read -r ut1 st1 mf1 < <(cpu_ticks "$SERVER_PID")
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    USR[$name]=$(awk -v d=$(( ut1 - ut0 )) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
    MINFLT[$name]=$(awk -v d=$(( mf1 - mf0 )) -v n="$n" 'BEGIN { printf "%.3f", d / n }')
    SYS[$name]=$(awk -v d=$(( st1 - st0 )) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
    CPU[$name]=$(awk -F, -v n="$n" '$3 == "task-clock" { printf "%.1f", $1 * 1000 / n }' "$RAW/$name-perf.csv")
    CS[$name]=$(awk -F, -v n="$n" '$3 == "context-switches" { printf "%.3f", $1 / n }' "$RAW/$name-perf.csv")

    log "$name: strace -c -f (${STRACE_S}s)"
    strace -c -f -p "$SERVER_PID" -o "$RAW/$name-strace.txt" 2>"$RAW/$name-strace.err" &
    st_pid=$!
    # Attached (to every thread: "Process P attached with N threads") before the load starts.
    deadline=$(( SECONDS + 10 ))
    until grep -q 'attached' "$RAW/$name-strace.err" 2>/dev/null; do
        (( SECONDS < deadline )) || die "strace did not attach to $name"
        sleep 0.05
    done
    n=$(load "$name" "$STRACE_S" "$RAW/$name-strace-wrk.txt")
    kill -INT "$st_pid"; wait "$st_pid" || true
    SC[$name]=$(awk -v n="$n" '$NF == "total" { printf "%.2f", $4 / n }' "$RAW/$name-strace.txt")
    SCTOP[$name]=$(awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { printf "%s %.2f\n", $NF, $4 / n }' "$RAW/$name-strace.txt" \
        | sort -k2 -gr | awk '$2 >= 0.05 { printf "%s%s %s", sep, $1, $2; sep = ", " }')
    stop_server

    # ---- under callgrind: user-space instructions
    if (( CALLGRIND )); then
        log "$name: callgrind (${IR_S}s)"
        mkdir -p "$RAW/callgrind"
        READY_TIMEOUT=180 start_server "$name" valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$RAW/callgrind/$name.%p" --trace-children=no
        callgrind_control -i on "$SERVER_PID" >/dev/null
        load "$name" 2 "$RAW/$name-cg-warmup.txt" >/dev/null
        callgrind_control -z "$SERVER_PID" >/dev/null
        n=$(load "$name" "$IR_S" "$RAW/$name-cg.txt")
        IRN[$name]=$n
        callgrind_control -d "$SERVER_PID" >/dev/null
        # shellcheck disable=SC2012  # our own dump names: newest first
        f=$(ls -t "$RAW/callgrind/$name."*.[0-9]* 2>/dev/null | head -n1)
        [[ -n "$f" ]] || die "no callgrind dump for $name"
        cp "$f" "$RAW/callgrind/$name.measured"
        IR[$name]=$(awk -v n="$n" '$1 == "summary:" || $1 == "totals:" { t = $2 } END { printf "%.0f", t / n }' "$f")
        stop_server
    fi
done

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
if [[ -n "$HIT" ]]; then
    echo "## Cost per request: nginx, edgeward, Pingora (${BODY_KIB} KiB answers, cache hits; edgeward's cache: $HIT)"
else
    echo "## Cost per request: nginx, edgeward, Pingora (${BODY_KIB} KiB answers)"
fi
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); nproc $(nproc); cpu: ${cpu_model:-unknown}; kernel: $(uname -sr)"
echo "- $("$NGINX" -v 2>&1 | head -n1); edgeward: $("$EDGEWARD" --version 2>&1 | head -n1) ($EDGEWARD)"
echo "- setup: one worker/thread per server pinned to CPU $SERVER_CPU; wrk -t1 -c$CONNS and the origin (nginx, 1 worker, a ${BODY_KIB} KiB file$([[ -z "$HIT" ]] || echo ', Cache-Control: max-age=3600')) on CPU $CLIENT_CPU; GET $PATH_1K, Host: bench.local$([[ "$HIT" != redis ]] || echo "; redis-server unpinned")"
echo "- instructions: user space, valgrind callgrind, a ${IR_S}s run after a 2 s warm-up (requests counted: $(for name in "${NAMES[@]}"; do printf '%s %s; ' "$name" "${IRN[$name]:-n/a}"; done)kernel instructions not counted: no PMU); syscalls: strace -c -f, ${STRACE_S}s; context switches and CPU: perf stat (software events), ${NATIVE_S}s (CPU time moves with the machine's load); user / kernel split and minor page faults: utime, stime and minflt of /proc/PID/stat over the same run (${HZ} Hz ticks)"
echo
echo "| server | instructions/request (user) | syscalls/request | context switches/request | CPU µs/request (noisy) | of which user / kernel µs | page faults/request | syscalls ≥ 0.05/request |"
echo "|:--|--:|--:|--:|--:|--:|--:|:--|"
for name in "${NAMES[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' "$name" "${IR[$name]:-n/a}" "${SC[$name]}" "${CS[$name]}" "${CPU[$name]}" "${USR[$name]}" "${SYS[$name]}" "${MINFLT[$name]}" "${SCTOP[$name]}"
done
echo
if (( CALLGRIND )) && [[ -n "${IR[nginx]:-}" ]]; then
    echo "Instructions relative to nginx: $(for name in "${NAMES[@]}"; do printf '%s %s; ' "$name" "$(ratio "${IR[$name]}" "${IR[nginx]}")"; done)"
    echo
fi
echo "callgrind dumps (\`callgrind_annotate --inclusive=yes FILE\`): \`$RAW/callgrind/*.measured\`"
SUCCESS=1
if (( CLEAN )); then echo "Raw output deleted (--clean)."; else echo "Raw output, configs and logs: \`$WORK\`"; fi
