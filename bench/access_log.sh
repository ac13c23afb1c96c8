#!/usr/bin/env bash
# Throughput cost of access logging: the same edgeward binary with the site's
# access log off (`access_log: { enabled: false }`) and on (the default:
# standard format), in front of the same small nginx origin on 127.0.0.1,
# loaded with wrk in interleaved rounds (off,on,off,on,...). Prints a markdown
# report (machine facts, command line, results, log line count check) to
# stdout; progress goes to stderr. See bench/README.md.
#
# Usage: bench/access_log.sh [--edgeward PATH] [--threads N] [--duration SECONDS]
#                            [--rounds R] [--connections C] [--wrk-threads N]
#                            [--warmup SECONDS] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/access_log.sh [options]

  --edgeward PATH       edgeward binary (default: target/release/edgeward;
                        built by scripts/build if missing)
  --threads N           edgeward threads (default 1)
  --duration SECONDS    duration of each measured wrk run (default 10)
  --rounds R            interleaved off,on rounds (default 3)
  --connections C       wrk connections (default 50)
  --wrk-threads N       wrk threads (default 1)
  --warmup SECONDS      warm-up run per config before measuring (default 2)
  --clean               delete the work dir (configs, logs, raw wrk output)
                        at the end instead of keeping it
  -h, --help            this help
EOF
}

BENCH_TAG=access-log-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

EDGEWARD=""
THREADS=1
DURATION=10
ROUNDS=3
CONNS=50
WRK_THREADS=1
WARMUP=2
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
(( CONNS >= WRK_THREADS )) || die "--connections $CONNS < --wrk-threads $WRK_THREADS (wrk needs >= 1 connection per thread)"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"

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

# ---------------------------------------------------------------- work dir + cleanup
make_workdir access-log-bench
bench_traps

# ---------------------------------------------------------------- ports
# Bind all three sockets at once so the ports are distinct, then release them.
read -r UP_PORT PORT_OFF PORT_ON < <(free_ports 3)
[[ -n "${PORT_ON:-}" ]] || die "could not pick free ports"
log "work dir $WORK; ports: upstream=$UP_PORT edgeward-off=$PORT_OFF edgeward-on=$PORT_ON"

USER_DIRECTIVE=""
if [[ $EUID -eq 0 ]]; then
    USER_DIRECTIVE="user $(id -un) $(id -gn);"
fi

# ---------------------------------------------------------------- upstream (origin)
UP_DIR="$WORK/upstream"
mkdir -p "$UP_DIR/tmp"
cat >"$UP_DIR/nginx.conf" <<EOF
$USER_DIRECTIVE
worker_processes 1;
daemon off;
master_process on;
pid $UP_DIR/nginx.pid;
error_log $UP_DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $UP_DIR/tmp/body;
    proxy_temp_path $UP_DIR/tmp/proxy;
    fastcgi_temp_path $UP_DIR/tmp/fastcgi;
    uwsgi_temp_path $UP_DIR/tmp/uwsgi;
    scgi_temp_path $UP_DIR/tmp/scgi;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { return 200 "hello\n"; }
    }
}
EOF
start_bg upstream "$NGINX" -p "$UP_DIR" -e "$UP_DIR/error.log" -c "$UP_DIR/nginx.conf"
UP_PID=$LAST_PID
wait_ready upstream "$UP_PID" "http://127.0.0.1:$UP_PORT/" localhost 10
EXPECTED_BODY="hello"

# ---------------------------------------------------------------- edgeward: off and on
# Both run the same binary and differ only in the site's access_log. The "on"
# instance logs to $WORK/logs (file $WORK/logs/http/site.log); the "off" one
# gets its own log_dir so that nothing it might write is mixed in.
ON_LOG="$WORK/logs/http/site.log"
OFF_LOG_DIR="$WORK/logs-off"

# edgeward_config PORT LOG_DIR ACCESS_LOG_LINE
edgeward_config() {
    cat <<EOF
listen: ["127.0.0.1:$1"]
threads: $THREADS
grace_period: 1s
accounts:
  bench:
    log_dir: $2
    sites:
      site:
        addresses: ["bench.local"]
        upstream:
          address: "127.0.0.1:$UP_PORT"
EOF
    [[ -z "$3" ]] || printf '        %s\n' "$3"
}

NAMES=(off on)
declare -A PORT=([off]=$PORT_OFF [on]=$PORT_ON)
declare -A PID
for p in "${NAMES[@]}"; do
    mkdir -p "$WORK/edgeward-$p"
    cfg="$WORK/edgeward-$p/edgeward.yaml"
    if [[ $p == off ]]; then
        edgeward_config "$PORT_OFF" "$OFF_LOG_DIR" 'access_log: { enabled: false }' >"$cfg"
    else
        edgeward_config "$PORT_ON" "$WORK/logs" '' >"$cfg"
    fi
    # A binary that does not know `access_log.enabled` fails here, with its message.
    "$EDGEWARD" check -c "$cfg" >"$WORK/edgeward-$p/check.log" 2>&1 \
        || { cat "$WORK/edgeward-$p/check.log" >&2; die "edgeward check rejected the '$p' config $cfg"; }
    start_bg "edgeward-$p" env RUST_LOG=warn "$EDGEWARD" run -c "$cfg"
    PID[$p]=$LAST_PID
    wait_ready "edgeward-$p" "${PID[$p]}" "http://127.0.0.1:${PORT[$p]}/" bench.local 30
done

# ---------------------------------------------------------------- sanity: both proxy the origin
for p in "${NAMES[@]}"; do
    body=$(curl -s --max-time 2 -D "$RAW/headers-$p.txt" -H 'Host: bench.local' "http://127.0.0.1:${PORT[$p]}/") || true
    [[ "$body" == "$EXPECTED_BODY" ]] \
        || die "edgeward-$p on port ${PORT[$p]} returned body '$body', expected '$EXPECTED_BODY'"
done

# ---------------------------------------------------------------- log line counting
line_count() {
    if [[ -f "$1" ]]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}

# settled_count FILE : line count once the log writer has caught up, i.e. once
# the count has not changed for 5 polls in a row (0.5 s); deadline 30 s.
settled_count() {
    local f=$1 deadline=$(( SECONDS + 30 )) last=-1 n same=0
    while :; do
        n=$(line_count "$f")
        if [[ "$n" == "$last" ]]; then
            (( ++same >= 5 )) && break
        else
            same=0; last=$n
        fi
        (( SECONDS < deadline )) || { log "log line count of $f still changing after 30s"; break; }
        sleep 0.1
    done
    echo "$n"
}

# The sanity request above must have produced a line in the "on" log (the
# line from the readiness poll may come first).
deadline=$(( SECONDS + 10 ))
until (( $(line_count "$ON_LOG") > 0 )); do
    (( SECONDS < deadline )) || die "no access log line in $ON_LOG after 10s (see $WORK/edgeward-on.log)"
    sleep 0.1
done


# run_wrk_on CONFIG DURATION OUTFILE
run_wrk_on() {
    run_wrk "edgeward-$1" "${PID[$1]}" "$3" -t"$WRK_THREADS" -c"$CONNS" -d"${2}s" --latency \
        -H 'Host: bench.local' "http://127.0.0.1:${PORT[$1]}/"
}

if (( WARMUP > 0 )); then
    for p in "${NAMES[@]}"; do
        log "warm-up: $p, ${WARMUP}s, -c$CONNS"
        run_wrk_on "$p" "$WARMUP" "$RAW/warmup-$p.txt"
    done
fi

declare -A RPS P50 P99 ERRS
LINE_ROWS=()            # per "on" round: "round requests lines"
TOTAL_REQS=0
TOTAL_LINES=0
for (( r = 1; r <= ROUNDS; r++ )); do
    for p in "${NAMES[@]}"; do
        out="$RAW/$p-r$r.txt"
        if [[ $p == on ]]; then before=$(settled_count "$ON_LOG"); fi
        log "measure: round $r/$ROUNDS access log $p (${DURATION}s, -c$CONNS)"
        run_wrk_on "$p" "$DURATION" "$out"
        parsed=$(parse_wrk "$out"); read -r rps p50 p99 errs reqs <<<"$parsed"
        RPS[$p]+="$rps "; P50[$p]+="$p50 "; P99[$p]+="$p99 "
        ERRS[$p]=$(( ${ERRS[$p]:-0} + errs ))
        if [[ $p == on ]]; then
            after=$(settled_count "$ON_LOG")
            lines=$(( after - before ))
            LINE_ROWS+=("$r $reqs $lines")
            TOTAL_REQS=$(( TOTAL_REQS + reqs ))
            TOTAL_LINES=$(( TOTAL_LINES + lines ))
        fi
    done
done

OFF_LINES=$(line_count "$OFF_LOG_DIR/http/site.log")
SAMPLE_LINE=$(grep -m1 '" 200 ' "$ON_LOG" || true)

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
[[ -n "$cpu_model" ]] || cpu_model=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }' || true)
nginx_version=$("$NGINX" -v 2>&1 | head -n1 || true)
edgeward_version=$("$EDGEWARD" --version 2>&1 | head -n1 || true)
wrk_version=$(wrk -v 2>&1 | head -n1 || true)

echo "## Access log benchmark: edgeward with the access log off vs on"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "- nproc: $(nproc)"
echo "- cpu: ${cpu_model:-unknown}"
echo "- kernel: $(uname -sr)"
echo "- edgeward: ${edgeward_version:-unknown} ($EDGEWARD)"
echo "- nginx (origin): ${nginx_version:-unknown}"
echo "- wrk: ${wrk_version:-unknown}"
echo "- setup: edgeward threads=$THREADS, wrk -t$WRK_THREADS -c$CONNS, ${DURATION}s per run, $ROUNDS interleaved off/on round(s), ${WARMUP}s warm-up per config; origin = nginx (1 worker) \`return 200\` ($(( ${#EXPECTED_BODY} + 1 )) byte body); all on 127.0.0.1"
echo "- off: \`access_log: { enabled: false }\`; on: no \`access_log\` key (standard format, \`log_dir/http/site.log\`)"
echo
echo "| access log | req/s (median) | p50 ms (median) | p99 ms (median) | errors (total) |"
echo "|:-----------|---------------:|----------------:|----------------:|---------------:|"
for p in "${NAMES[@]}"; do
    # shellcheck disable=SC2086  # intentional word splitting of the value lists
    printf '| %s | %.0f | %.3f | %.3f | %s |\n' "$p" \
        "$(median ${RPS[$p]})" "$(median ${P50[$p]})" "$(median ${P99[$p]})" "${ERRS[$p]}"
done
echo
# shellcheck disable=SC2086
off_rps=$(median ${RPS[off]})
# shellcheck disable=SC2086
on_rps=$(median ${RPS[on]})
awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {
    if (b <= 0) { print "Cost of the access log: n/a"; exit }
    c = (1 - a / b) * 100
    printf "Cost of the access log (`1 - on/off` of median req/s): **%.1f%%** (goal < 5%%: %s)\n", c, (c < 5 ? "met" : "NOT met")
}'
echo
echo "Per-round req/s: off = ${RPS[off]% }; on = ${RPS[on]% }"
echo
echo "Access log lines written during each \"on\" run vs requests wrk completed:"
echo
echo "| round | wrk requests | log lines | lines - requests |"
echo "|------:|-------------:|----------:|-----------------:|"
for row in "${LINE_ROWS[@]}"; do
    read -r r reqs lines <<<"$row"
    printf '| %s | %s | %s | %+d |\n' "$r" "$reqs" "$lines" $(( lines - reqs ))
done
printf '| total | %s | %s | %+d |\n' "$TOTAL_REQS" "$TOTAL_LINES" $(( TOTAL_LINES - TOTAL_REQS ))
echo
echo "Expected: \`lines - requests\` between 0 and $CONNS (the connection count) per"
echo "run. When wrk stops, each connection can have one request in flight; edgeward"
echo "logs it (status 0 if no response was sent yet) but wrk does not count it."
echo "A negative difference means lines were dropped because the log queue was"
echo "full (counted in \`edgeward_log_dropped_lines_total\`)."
echo
echo "- lines in the \"off\" instance's access log: $OFF_LINES (expected 0)"
echo "- sample \"on\" line: \`$SAMPLE_LINE\`"
echo

SUCCESS=1
if (( CLEAN )); then
    echo "Raw wrk output deleted (--clean)."
else
    echo "Raw wrk output, configs and logs: \`$WORK\`"
fi
