# shellcheck shell=bash
# Shell helpers shared by the benchmarks in bench/ (sourced, not run): logging,
# tools, the edgeward binary, the work dir and cleanup on exit, servers in
# their own session, free ports, readiness polling, wrk runs and their
# parsing, medians. The caller sets BENCH_TAG (log prefix) before sourcing,
# then WORK (make_workdir), and keeps the pids it starts in PIDS (start_bg
# appends to it).

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && (( "$1" > 0 )); }

# Start a server in its own session (so its pid is its process group id),
# output in $WORK/NAME.log; its pid in LAST_PID.
start_bg() {
    local name=$1; shift
    setsid "$@" </dev/null >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# free_ports N: N distinct free loopback ports on one line (all bound at
# once, then released).
free_ports() {
    python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}

# Poll URL (with Host: HOST) until 200, with a deadline in seconds.
wait_ready() {
    local name=$1 pid=$2 url=$3 host=$4 deadline=$(( SECONDS + $5 )) code
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$WORK/$name.log" "$WORK/$name/error.log" >&2 2>/dev/null || true
            die "$name exited before becoming ready (see $WORK/$name.log)"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $host" "$url" 2>/dev/null) || code=000
        [[ "$code" == 200 ]] && return 0
        if (( SECONDS >= deadline )); then
            tail -n 30 "$WORK/$name.log" "$WORK/$name/error.log" >&2 2>/dev/null || true
            die "$name not ready at $url after ${5}s (last HTTP status $code)"
        fi
        sleep 0.05
    done
}

# SIGTERM, wait up to 10 s, then SIGKILL the process group.
stop_pid() {
    local pid=$1 i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < 100; i++ )); do           # servers stop within their grace period
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not exit after SIGTERM; sending SIGKILL to its process group"
        # Servers are started under setsid, so the pid is its process group id.
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# wrk's latency ("850.00us", "1.20ms", "2.00s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (match(v, /^[0-9.]+/) == 0) { print "nan"; exit }
        n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
        if (u == "us") f = 0.001; else if (u == "ms") f = 1; else if (u == "s") f = 1000
        else if (u == "m") f = 60000; else if (u == "h") f = 3600000; else { print "nan"; exit }
        printf "%.6f\n", n * f
    }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) { print "nan"; exit }
              if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------- tools
# have CMD: CMD is on PATH or in /usr/sbin (nginx, varnishd when PATH has no sbin).
have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

# install_missing PACKAGE... : apt-get install the Debian packages given (none
# given: nothing to do); as root with apt-get, else die with the command to run.
install_missing() {
    (( $# )) || return 0
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing missing tools: $*"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    else
        die "missing tools: $*; install them with: apt-get install -y $*"
    fi
}

# ---------------------------------------------------------------- edgeward binary
# resolve_edgeward PATH : set EDGEWARD to PATH (relative to ORIG_PWD), or when
# PATH is empty to the release binary, built as it ships (scripts/build) if
# it is missing. Needs REPO_ROOT and ORIG_PWD.
resolve_edgeward() {
    if [[ -n "$1" ]]; then
        EDGEWARD=$1
        [[ "$EDGEWARD" = /* ]] || EDGEWARD="$ORIG_PWD/$EDGEWARD"
        [[ -x "$EDGEWARD" ]] || die "--edgeward $EDGEWARD is not an executable file"
        return 0
    fi
    EDGEWARD="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/edgeward"
    if [[ ! -x "$EDGEWARD" ]]; then
        command -v cargo >/dev/null 2>&1 || die "$EDGEWARD missing and cargo not found"
        log "$EDGEWARD missing; running scripts/build"
        (cd "$REPO_ROOT" && scripts/build >&2)
        [[ -x "$EDGEWARD" ]] || die "scripts/build did not produce $EDGEWARD"
    fi
}

# ---------------------------------------------------------------- work dir + cleanup
# make_workdir NAME : WORK (a new temp dir ${TMPDIR:-/tmp}/edgeward-NAME.XXXXXX,
# traversable by the nginx/varnish workers that drop root) and RAW in it.
make_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeward-$1.XXXXXX")
    RAW="$WORK/raw"
    mkdir -p "$RAW"
    chmod 755 "$WORK"
}

# The caller sets CLEAN (1: delete WORK after a successful run), sets SUCCESS=1
# once its report is out, and may define bench_stop_extra (called after the
# wrk run is stopped, before the servers in PIDS) for processes of its own.
PIDS=()      # every server started with start_bg, in start order
WRK_PID=""   # the wrk run in progress, if any
SUCCESS=0
CLEAN=0

# On exit (normal, error, INT, TERM): stop wrk, then the caller's extra
# processes, then every server in PIDS in reverse start order; delete WORK
# after a successful --clean run, keep it (and say so) after a failure.
bench_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    if [[ -n "$WRK_PID" ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    if declare -F bench_stop_extra >/dev/null; then bench_stop_extra; fi
    for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do   # proxies first, origin last
        stop_pid "${PIDS[i]}"
    done
    if [[ -n "${WORK:-}" ]]; then
        if (( CLEAN && SUCCESS )); then
            rm -rf "$WORK"
        elif (( ! SUCCESS )); then
            log "failed (exit $rc); configs, logs and raw output kept in $WORK"
        fi
    fi
    exit "$rc"
}
bench_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------- wrk
# run_wrk NAME PID OUT WRK-ARGS... : one wrk run, its output in OUT. Dies if
# NAME (process PID) is gone before it starts or wrk fails. wrk runs in the
# background + wait, so that INT/TERM traps fire at once instead of after
# wrk finishes; bench_cleanup kills a still-running wrk.
run_wrk() {
    local name=$1 pid=$2 out=$3 hint
    shift 3
    hint="$WORK/$name.log"; [[ -e "$hint" ]] || hint=$WORK
    kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) died during the benchmark; see $hint"
    wrk "$@" </dev/null >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { WRK_PID=""; cat "$out" >&2; die "wrk failed against $name"; }
    WRK_PID=""
}

# parse_wrk FILE -> "rps p50_ms p99_ms errors requests" from wrk --latency
# output; errors = socket errors (connect/read/write/timeout) + non-2xx/3xx
# responses; requests = the requests wrk completed.
parse_wrk() {
    local f=$1 rps p50 p99 errs reqs
    rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$f")
    p50=$(awk '$1 == "50%" { print $2; exit }' "$f")
    p99=$(awk '$1 == "99%" { print $2; exit }' "$f")
    reqs=$(awk '/ requests in / { print $1; exit }' "$f")
    [[ -n "$rps" && -n "$p50" && -n "$p99" && -n "$reqs" ]] || { cat "$f" >&2; die "could not parse wrk output $f"; }
    errs=$(awk '
        /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { n += $NF }
        END { print n + 0 }' "$f")
    printf '%s %s %s %s %s\n' "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "$errs" "$reqs"
}

# ---------------------------------------------------------------- report
# ratio A B : A/B with 2 decimals, "n/a" when B is not positive.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# round_ratios "A1 A2 ..." "B1 B2 ..." : the ratios A_i/B_i of runs made in
# the same round, as markdown cells "median | lowest | highest | every
# round": how much of a ratio is the machine's noise.
round_ratios() {
    local -a rr_num rr_den rr_ratios=()
    local i
    read -ra rr_num <<<"$1"; read -ra rr_den <<<"$2"
    for i in "${!rr_num[@]}"; do rr_ratios+=("$(ratio "${rr_num[$i]}" "${rr_den[$i]}")"); done
    printf '%.2f | %s | %s | %s' "$(median "${rr_ratios[@]}")" \
        "$(printf '%s\n' "${rr_ratios[@]}" | sort -g | head -n1)" \
        "$(printf '%s\n' "${rr_ratios[@]}" | sort -g | tail -n1)" "${rr_ratios[*]}"
}

# server_ticks PID : CPU time (user + system, clock ticks) of every process
# in the session of PID (start_bg runs each server in its own session: the
# nginx master and workers, edgeward and all its threads).
server_ticks() {
    local p line rest t=0
    local -a st_fields
    for p in $(pgrep -s "$1"); do
        read -r line <"/proc/$p/stat" 2>/dev/null || continue
        rest=${line##*) }                    # fields from 3 (state) on
        read -r -a st_fields <<<"$rest"
        t=$(( t + st_fields[11] + st_fields[12] ))   # utime (14), stime (15)
    done
    echo "$t"
}

# ---------------------------------------------------------------- nginx
# nginx_main DIR WORKERS / nginx_http_common DIR: the configuration every nginx
# of the benchmarks shares (everything inside DIR; temp paths set explicitly so
# no /var/lib/nginx access is needed; as root, workers run as the caller).
nginx_main() {
    local dir=$1 workers=$2 user=""
    if [[ $EUID -eq 0 ]]; then
        user="user $(id -un) $(id -gn);"
    fi
    cat <<EOF
$user
worker_processes $workers;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
    local dir=$1
    cat <<EOF
    access_log off;
    default_type text/plain;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
EOF
}

# nginx_proxy_upstream UP_PORT and nginx_proxy_location: the nginx reverse
# proxy of proxy.sh, cost.sh and tls.sh, inside http { } and server { }:
# keep-alive connections to the origin on 127.0.0.1:UP_PORT, and roughly the
# header work edgeward does (Host, X-Forwarded-For, X-Forwarded-Proto,
# X-Request-Id).
nginx_proxy_upstream() {
    cat <<EOF
    upstream origin {
        server 127.0.0.1:$1;
        keepalive 64;
        keepalive_requests 1000000;
    }
EOF
}
nginx_proxy_location() {
    cat <<'EOF'
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
        }
EOF
}

# nginx_send_files: how every nginx of the benchmarks that sends files (cache
# hits, bench/sendfile.sh's static file) is tuned, inside http { }: as an
# operator would, sendfile and an open file cache.
nginx_send_files() {
    cat <<EOF
    sendfile on;
    # tcp_nopush off: with it (and sendfile) every keep-alive 100 KiB hit
    # stalled ~40 ms on loopback (1.5k req/s, p50 44 ms): the last partial
    # segment waited for a delayed ACK.
    tcp_nopush off;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_min_uses 1;
EOF
}

# nginx_cache_http DIR: nginx's proxy_cache as bench/cache.sh and
# bench/cost.sh --hit set it up, inside http { } (cache files in DIR/cache):
# tuned as nginx_send_files says (proxy_cache's files are opened through the
# open file cache); X-Cache tells a hit.
nginx_cache_http() {
    nginx_send_files
    cat <<EOF
    proxy_cache_path $1/cache levels=1:2 keys_zone=bench:10m max_size=1g inactive=1h use_temp_path=off;
    proxy_cache bench;
    proxy_cache_lock on;
    add_header X-Cache \$upstream_cache_status;
EOF
}

# is_cache_hit SERVER HEADERS-FILE: whether the response whose header is in
# HEADERS-FILE came from SERVER's cache (edgeward*, nginx, varnish,
# pingora-static).
is_cache_hit() {
    case "$1" in
        edgeward*)      grep -qi '^cache-status: edgeward; hit' "$2" ;;
        nginx)          grep -qi '^x-cache: HIT' "$2" ;;
        varnish)        grep -qiE '^x-varnish: [0-9]+ [0-9]+' "$2" ;;
        pingora-static) grep -qi '^cache-status: pingora-static; hit' "$2" ;;
        *)              return 1 ;;
    esac
}

# start_origin PORT [KIB]: the origin of proxy.sh and tls.sh, an nginx (1
# worker) answering every request on 127.0.0.1:PORT with 200 "hello from
# upstream" or, with KIB > 0, a file of KIB KiB of "x" (the same for every
# path), in $WORK/upstream ($NGINX and $WORK set by the caller). Sets UP_DIR,
# UP_PID, EXPECTED_BODY and ORIGIN_DESC.
start_origin() {
    local port=$1 kib=${2:-0} location
    UP_DIR="$WORK/upstream"
    mkdir -p "$UP_DIR/tmp" "$UP_DIR/www"
    if (( kib > 0 )); then
        head -c $(( kib * 1024 )) /dev/zero | tr '\0' 'x' >"$UP_DIR/www/body.txt"
        chmod -R a+rX "$UP_DIR/www"
        location="location / { root $UP_DIR/www; try_files /body.txt =404; }"
        # shellcheck disable=SC2034  # read by the scripts that source this file
        EXPECTED_BODY=$(cat "$UP_DIR/www/body.txt")
        ORIGIN_DESC="a ${kib} KiB static file"
    else
        location='location / { return 200 "hello from upstream\n"; }'
        # shellcheck disable=SC2034  # read by the scripts that source this file
        EXPECTED_BODY="hello from upstream"
        # shellcheck disable=SC2034  # read by the scripts that source this file
        ORIGIN_DESC="\`return 200\` (20 byte body)"
    fi
    {
        nginx_main "$UP_DIR" 1
        echo "http {"
        nginx_http_common "$UP_DIR"
        cat <<EOF
    server {
        listen 127.0.0.1:$port;
        $location
    }
}
EOF
    } >"$UP_DIR/nginx.conf"
    start_bg upstream "$NGINX" -p "$UP_DIR" -e "$UP_DIR/error.log" -c "$UP_DIR/nginx.conf"
    UP_PID=$LAST_PID
    wait_ready upstream "$UP_PID" "http://127.0.0.1:$port/" localhost 10
}

# ---------------------------------------------------------------- Pingap
# find_pingap [PATH]: PATH (relative to ORIG_PWD), else `pingap` on PATH or in
# ~/.cargo/bin (`cargo install pingap --version 0.13.1 --locked`, which needs
# Debian's protobuf-compiler), else nothing (the caller goes on without it).
find_pingap() {
    local p=$1
    if [[ -n "$p" ]]; then
        [[ "$p" = /* ]] || p="$ORIG_PWD/$p"
        [[ -x "$p" ]] || die "--pingap $p is not an executable file"
        echo "$p"; return 0
    fi
    p=$(command -v pingap 2>/dev/null || true)
    [[ -n "$p" ]] || { p="${CARGO_HOME:-$HOME/.cargo}/bin/pingap"; [[ -x "$p" ]] || p=""; }
    echo "$p"
}

# pingap_conf FILE PORT UPSTREAM_PORT THREADS: a Pingap 0.13 configuration
# proxying every request on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM_PORT with
# THREADS threads, no access log (run it with `pingap -c FILE`).
pingap_conf() {   # FILE PORT UPSTREAM_PORT THREADS [WORK_STEALING: true (Pingap's default) | false]
    local file=$1 dir
    dir=$(dirname "$file")
    cat >"$file" <<EOF
[basic]
name = "pingap-bench"
pid_file = "$dir/pingap.pid"
log_level = "WARN"
threads = $4
work_stealing = ${5:-true}
grace_period = "1s"
graceful_shutdown_timeout = "1s"

[upstreams.origin]
addrs = ["127.0.0.1:$3"]

[locations.all]
path = "/"
upstream = "origin"

[servers.bench]
addr = "127.0.0.1:$2"
locations = ["all"]
threads = $4
EOF
}
