#!/usr/bin/env bash
# Reverse-proxy throughput/latency benchmark: edgeward vs nginx.
#
# Both proxies sit in front of the same small nginx origin on 127.0.0.1 and
# are loaded with wrk in interleaved rounds (A,B,A,B,...). Prints a markdown
# report (machine facts, command line, results table) to stdout; progress goes
# to stderr. See bench/README.md.
#
# Usage: bench/proxy.sh [--edgeward PATH] [--threads N] [--duration SECONDS]
#                       [--rounds R] [--connections "16 50"] [--wrk-threads N]
#                       [--warmup SECONDS] [--pingap PATH] [--pingap-no-steal]
#                       [--body-kib N] [--no-extra] [--clean]
#
# Also measured, beside them and the same way: pingora-proxy-min
# (bench/pingora_proxy_min.rs, a Pingora proxy with only upstream_peer, when
# target/release/examples/pingora-proxy-min is built) and Pingap 0.13.1 (when
# its binary is found, see --pingap).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/proxy.sh [options]

  --edgeward PATH       edgeward binary (default: target/release/edgeward;
                        built by scripts/build if missing)
  --threads N           edgeward threads = nginx worker_processes (default 1)
  --duration SECONDS    duration of each measured wrk run (default 10)
  --rounds R            interleaved A,B rounds per connection count (default 2)
  --connections "C..."  space-separated wrk connection counts (default "16 50")
  --wrk-threads N       wrk threads (default 1)
  --warmup SECONDS      warm-up run per proxy before measuring (default 2)
  --body-kib N          the origin answers a file of N KiB (default 0: a
                        20-byte `return 200`)
  --pingap PATH         Pingap binary (default: `pingap` on PATH or in
                        ~/.cargo/bin; without one Pingap is left out)
  --pingap-no-steal     run Pingap with `work_stealing = false`, as edgeward
                        and pingora-proxy-min run (default: Pingap's own
                        default, work stealing on)
  --no-extra            measure edgeward and nginx only
  --clean               delete the work dir (configs, logs, raw wrk output)
                        at the end instead of keeping it
  -h, --help            this help
EOF
}

BENCH_TAG=proxy-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

EDGEWARD=""
THREADS=1
DURATION=10
ROUNDS=2
CONNECTIONS="16 50"
WRK_THREADS=1
WARMUP=2
CLEAN=0
PINGAP=""
PINGAP_STEAL=true
EXTRA=1
BODY_KIB=0

while (( $# )); do
    case "$1" in
        --edgeward)    EDGEWARD=${2:?--edgeward needs a path}; shift 2 ;;
        --threads)     THREADS=${2:?--threads needs a value}; shift 2 ;;
        --duration)    DURATION=${2:?--duration needs a value}; shift 2 ;;
        --rounds)      ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --wrk-threads) WRK_THREADS=${2:?--wrk-threads needs a value}; shift 2 ;;
        --warmup)      WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --pingap)      PINGAP=${2:?--pingap needs a path}; shift 2 ;;
        --pingap-no-steal) PINGAP_STEAL=false; shift ;;
        --body-kib)    BODY_KIB=${2:?--body-kib needs a value}; shift 2 ;;
        --no-extra)    EXTRA=0; shift ;;
        --clean)       CLEAN=1; shift ;;
        -h|--help)     usage; exit 0 ;;
        *)             usage >&2; die "unknown argument: $1" ;;
    esac
done

is_uint "$THREADS"     || die "--threads must be a positive integer"
is_uint "$DURATION"    || die "--duration must be a positive integer (seconds)"
is_uint "$ROUNDS"      || die "--rounds must be a positive integer"
is_uint "$WRK_THREADS" || die "--wrk-threads must be a positive integer"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"
[[ "$BODY_KIB" =~ ^[0-9]+$ ]] || die "--body-kib must be a non-negative integer"
read -r -a CONNS <<<"$CONNECTIONS"
(( ${#CONNS[@]} > 0 )) || die "--connections must not be empty"
for c in "${CONNS[@]}"; do
    is_uint "$c" || die "--connections: '$c' is not a positive integer"
    (( c >= WRK_THREADS )) || die "--connections: $c < --wrk-threads $WRK_THREADS (wrk needs >= 1 connection per thread)"
done

# ---------------------------------------------------------------- tools
need_install=()
have wrk   || need_install+=(wrk)
have curl  || need_install+=(curl)
have nginx || need_install+=(nginx-light)
install_missing "${need_install[@]}"
command -v python3 >/dev/null 2>&1 || die "python3 is required (used to pick free ports)"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx not found; install it with: apt-get install -y nginx-light"

# ---------------------------------------------------------------- edgeward binary
cd "$REPO_ROOT"
resolve_edgeward "$EDGEWARD"
PINGORA_MIN="$(dirname "$EDGEWARD")/examples/pingora-proxy-min"
[[ -x "$PINGORA_MIN" ]] || PINGORA_MIN=""
PINGAP=$(find_pingap "$PINGAP")
if (( ! EXTRA )); then PINGORA_MIN=""; PINGAP=""; fi
[[ -n "$PINGORA_MIN" ]] || log "pingora-proxy-min not built (scripts/build --example pingora-proxy-min): left out"
[[ -n "$PINGAP" ]] || log "no Pingap binary (cargo install pingap --version 0.13.1 --locked, or --pingap PATH): left out"

# ---------------------------------------------------------------- work dir + cleanup
make_workdir proxy-bench
bench_traps

# ---------------------------------------------------------------- ports
# Bind all three sockets at once so the ports are distinct, then release them.
read -r UP_PORT PORT_A PORT_B PORT_M PORT_P < <(free_ports 5)
[[ -n "${PORT_P:-}" ]] || die "could not pick free ports"
log "work dir $WORK; ports: upstream=$UP_PORT edgeward=$PORT_A nginx=$PORT_B"

# ---------------------------------------------------------------- upstream (origin)
start_origin "$UP_PORT" "$BODY_KIB"

# ---------------------------------------------------------------- proxy A: edgeward
EW_DIR="$WORK/edgeward"
mkdir -p "$EW_DIR" "$WORK/logs/bench"
cat >"$EW_DIR/edgeward.yaml" <<EOF
listen: ["127.0.0.1:$PORT_A"]
threads: $THREADS
grace_period: 1s
accounts:
  bench:
    log_dir: $WORK/logs/bench
    sites:
      site:
        addresses: ["bench.local"]
        upstream:
          address: "127.0.0.1:$UP_PORT"
        # Parity with the nginx side (access_log off); bench/access_log.sh
        # measures the access log's own cost.
        access_log: { enabled: false }
EOF
start_bg edgeward env RUST_LOG=warn "$EDGEWARD" run -c "$EW_DIR/edgeward.yaml"
EW_PID=$LAST_PID
wait_ready edgeward "$EW_PID" "http://127.0.0.1:$PORT_A/" bench.local 30

# ---------------------------------------------------------------- proxy B: nginx
NX_DIR="$WORK/nginx"
mkdir -p "$NX_DIR/tmp"
{
    nginx_main "$NX_DIR" "$THREADS"
    echo "http {"
    nginx_http_common "$NX_DIR"
    cat <<EOF
$(nginx_proxy_upstream "$UP_PORT")
    server {
        listen 127.0.0.1:$PORT_B;
        server_name bench.local;
$(nginx_proxy_location)
    }
}
EOF
} >"$NX_DIR/nginx.conf"
start_bg nginx "$NGINX" -p "$NX_DIR" -e "$NX_DIR/error.log" -c "$NX_DIR/nginx.conf"
NX_PID=$LAST_PID
wait_ready nginx "$NX_PID" "http://127.0.0.1:$PORT_B/" bench.local 10

NAMES=(edgeward nginx)
declare -A PORT=([edgeward]=$PORT_A [nginx]=$PORT_B)
declare -A PID=([edgeward]=$EW_PID [nginx]=$NX_PID)

# ---------------------------------------------------------------- the minimal Pingora proxy, Pingap
if [[ -n "$PINGORA_MIN" ]]; then
    start_bg pingora-proxy-min "$PINGORA_MIN" "127.0.0.1:$PORT_M" "$THREADS" "127.0.0.1:$UP_PORT"
    PID[pingora-proxy-min]=$LAST_PID; PORT[pingora-proxy-min]=$PORT_M; NAMES+=(pingora-proxy-min)
    wait_ready pingora-proxy-min "$LAST_PID" "http://127.0.0.1:$PORT_M/" bench.local 30
fi
if [[ -n "$PINGAP" ]]; then
    mkdir -p "$WORK/pingap"
    pingap_conf "$WORK/pingap/pingap.toml" "$PORT_P" "$UP_PORT" "$THREADS" "$PINGAP_STEAL"
    start_bg pingap env RUST_LOG=warn "$PINGAP" -c "$WORK/pingap/pingap.toml"
    PID[pingap]=$LAST_PID; PORT[pingap]=$PORT_P; NAMES+=(pingap)
    wait_ready pingap "$LAST_PID" "http://127.0.0.1:$PORT_P/" bench.local 30
fi

# ---------------------------------------------------------------- sanity: all proxy the origin
for p in "${NAMES[@]}"; do
    body=$(curl -s --max-time 2 -D "$RAW/headers-$p.txt" -H 'Host: bench.local' "http://127.0.0.1:${PORT[$p]}/") || true
    [[ "$body" == "$EXPECTED_BODY" ]] \
        || die "$p on port ${PORT[$p]} returned a body of ${#body} bytes, not the origin's ${#EXPECTED_BODY}: '${body:0:80}'"
done


# run_wrk_at PROXY CONNS DURATION OUTFILE
run_wrk_at() {
    run_wrk "$1" "${PID[$1]}" "$4" -t"$WRK_THREADS" -c"$2" -d"${3}s" --latency \
        -H 'Host: bench.local' "http://127.0.0.1:${PORT[$1]}/"
}

max_c=0
for c in "${CONNS[@]}"; do (( c > max_c )) && max_c=$c; done
if (( WARMUP > 0 )); then
    for p in "${NAMES[@]}"; do
        log "warm-up: $p, ${WARMUP}s, -c$max_c"
        run_wrk_at "$p" "$max_c" "$WARMUP" "$RAW/warmup-$p.txt"
    done
fi

declare -A RPS P50 P99 ERRS
for c in "${CONNS[@]}"; do
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in "${NAMES[@]}"; do
            out="$RAW/c$c-$p-r$r.txt"
            log "measure: -c$c round $r/$ROUNDS $p (${DURATION}s)"
            run_wrk_at "$p" "$c" "$DURATION" "$out"
            parsed=$(parse_wrk "$out"); read -r rps p50 p99 errs _ <<<"$parsed"
            RPS[$c,$p]+="$rps "; P50[$c,$p]+="$p50 "; P99[$c,$p]+="$p99 "
            ERRS[$c,$p]=$(( ${ERRS[$c,$p]:-0} + errs ))
        done
    done
done

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
[[ -n "$cpu_model" ]] || cpu_model=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }' || true)
nginx_version=$("$NGINX" -v 2>&1 | head -n1 || true)
edgeward_version=$("$EDGEWARD" --version 2>&1 | head -n1 || true)
wrk_version=$(wrk -v 2>&1 | head -n1 || true)

echo "## Proxy benchmark: edgeward vs nginx"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "- nproc: $(nproc)"
echo "- cpu: ${cpu_model:-unknown}"
echo "- kernel: $(uname -sr)"
echo "- nginx: ${nginx_version:-unknown}"
echo "- edgeward: ${edgeward_version:-unknown} ($EDGEWARD)"
echo "- wrk: ${wrk_version:-unknown}"
echo "- setup: proxy threads/workers=$THREADS, wrk -t$WRK_THREADS, ${DURATION}s per run, $ROUNDS interleaved round(s), ${WARMUP}s warm-up per proxy; origin = nginx (1 worker), $ORIGIN_DESC; all on 127.0.0.1"
echo
echo "| conns | proxy | req/s (median) | p50 ms (median) | p99 ms (median) | errors (total) |"
echo "|------:|:------|---------------:|----------------:|----------------:|---------------:|"
for c in "${CONNS[@]}"; do
    for p in "${NAMES[@]}"; do
        # shellcheck disable=SC2086  # intentional word splitting of the value lists
        printf '| %s | %s | %.0f | %.3f | %.3f | %s |\n' "$c" "$p" \
            "$(median ${RPS[$c,$p]})" "$(median ${P50[$c,$p]})" "$(median ${P99[$c,$p]})" "${ERRS[$c,$p]}"
    done
done
echo
echo "| conns | edgeward req/s | nginx req/s | edgeward/nginx | edgeward p99/nginx p99 |$(for p in "${NAMES[@]:2}"; do printf ' %s/nginx | edgeward/%s |' "$p" "$p"; done)"
echo "|------:|---------------:|------------:|---------------:|---------------:|$(for p in "${NAMES[@]:2}"; do printf -- '--:|--:|'; done)"
for c in "${CONNS[@]}"; do
    # shellcheck disable=SC2086
    a=$(median ${RPS[$c,edgeward]})
    # shellcheck disable=SC2086
    b=$(median ${RPS[$c,nginx]})
    # shellcheck disable=SC2086
    row=$(printf '| %s | %.0f | %.0f | %s | %s |' "$c" "$a" "$b" "$(ratio "$a" "$b")" "$(ratio "$(median ${P99[$c,edgeward]})" "$(median ${P99[$c,nginx]})")")
    for p in "${NAMES[@]:2}"; do
        # shellcheck disable=SC2086
        x=$(median ${RPS[$c,$p]})
        row+=$(printf ' %s | %s |' "$(ratio "$x" "$b")" "$(ratio "$a" "$x")")
    done
    echo "$row"
done
echo
echo "pingora-proxy-min: bench/pingora_proxy_min.rs, Pingora with only upstream_peer, built like edgeward (mimalloc through edgeward::alloc, no work stealing, h2c, 4 KiB write buffer). pingap: Pingap (${PINGAP:-not measured}; 0.13.1 from \`cargo install pingap --version 0.13.1 --locked\`), threads=$THREADS, work_stealing=$PINGAP_STEAL, no access log, same origin."
echo

SUCCESS=1
if (( CLEAN )); then
    echo "Raw wrk output deleted (--clean)."
else
    echo "Raw wrk output, configs and logs: \`$WORK\`"
fi
