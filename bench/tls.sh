#!/usr/bin/env bash
# HTTPS benchmark: edgeward vs nginx terminating TLS with the same ECDSA
# P-256 certificate, the same protocols (TLS 1.2, 1.3) and ciphers (Mozilla
# intermediate), both proxying to the same small nginx origin on 127.0.0.1,
# one worker each, measured in alternating rounds (edgeward, nginx, ...):
#   hs      full TLS 1.3 handshakes/s, no request (openssl s_time -new)
#   hs-req  full TLS 1.3 handshake + one HTTP/1.1 request per connection
#   hs12    full TLS 1.2 handshakes/s, no request
#   https   keep-alive HTTP/1.1 over TLS, req/s (wrk)
#   h2      HTTP/2 over TLS, req/s (h2load -m STREAMS)
#   http    plain HTTP/1.1 keep-alive, req/s (wrk; bench/proxy.sh's test)
# Besides throughput it reads each server's CPU time (/proc) around every
# run and reports server CPU per handshake or request, which is what a
# server's capacity is when the load generator, not the server, is the
# bottleneck. Prints a markdown report to stdout; progress goes to stderr.
# See bench/README.md.
#
# Usage: bench/tls.sh [--edgeward PATH] [--threads N] [--duration SECONDS]
#                     [--rounds R] [--connections "16 50"] [--streams M]
#                     [--hs-clients P] [--tests "hs hs-req hs12 https h2 http"]
#                     [--warmup SECONDS] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/tls.sh [options]

  --edgeward PATH       edgeward binary (default: target/release/edgeward;
                        built by scripts/build if missing)
  --threads N           edgeward threads = nginx worker_processes (default 1)
  --duration SECONDS    duration of each measured run (default 10)
  --rounds R            alternating edgeward,nginx rounds per test (default 2)
  --connections "C..."  connection counts of the https, h2 and http tests
                        (default "16 50")
  --streams M           h2load -m: concurrent streams per connection (default 10)
  --hs-clients P        parallel openssl s_time clients in the handshake
                        tests (default 2)
  --tests "T..."        tests to run, in this order in the report (default
                        "hs hs-req hs12 https h2 http")
  --warmup SECONDS      warm-up per server before measuring (default 2)
  --clean               delete the work dir (configs, certificate, logs, raw
                        output) at the end instead of keeping it
  -h, --help            this help
EOF
}

BENCH_TAG=tls-bench
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
STREAMS=10
HS_CLIENTS=2
TESTS="hs hs-req hs12 https h2 http"
WARMUP=2
CLEAN=0

while (( $# )); do
    case "$1" in
        --edgeward)    EDGEWARD=${2:?--edgeward needs a path}; shift 2 ;;
        --threads)     THREADS=${2:?--threads needs a value}; shift 2 ;;
        --duration)    DURATION=${2:?--duration needs a value}; shift 2 ;;
        --rounds)      ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --streams)     STREAMS=${2:?--streams needs a value}; shift 2 ;;
        --hs-clients)  HS_CLIENTS=${2:?--hs-clients needs a value}; shift 2 ;;
        --tests)       TESTS=${2:?--tests needs a list}; shift 2 ;;
        --warmup)      WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --clean)       CLEAN=1; shift ;;
        -h|--help)     usage; exit 0 ;;
        *)             usage >&2; die "unknown argument: $1" ;;
    esac
done

is_uint "$THREADS"    || die "--threads must be a positive integer"
is_uint "$DURATION"   || die "--duration must be a positive integer (seconds)"
is_uint "$ROUNDS"     || die "--rounds must be a positive integer"
is_uint "$STREAMS"    || die "--streams must be a positive integer"
is_uint "$HS_CLIENTS" || die "--hs-clients must be a positive integer"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"
read -r -a CONNS <<<"$CONNECTIONS"
(( ${#CONNS[@]} > 0 )) || die "--connections must not be empty"
for c in "${CONNS[@]}"; do
    is_uint "$c" || die "--connections: '$c' is not a positive integer"
done
read -r -a TEST_LIST <<<"$TESTS"
(( ${#TEST_LIST[@]} > 0 )) || die "--tests must not be empty"
for t in "${TEST_LIST[@]}"; do
    case "$t" in
        hs|hs-req|hs12|https|h2|http) ;;
        *) die "--tests: unknown test '$t' (known: hs hs-req hs12 https h2 http)" ;;
    esac
done

START_DATE=$(date -u '+%Y-%m-%dT%H:%M:%SZ')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- tools
need_install=()
have wrk     || need_install+=(wrk)
have h2load  || need_install+=(nghttp2-client)
have curl    || need_install+=(curl)
have openssl || need_install+=(openssl)
have pgrep   || need_install+=(procps)
have nginx   || need_install+=(nginx-light)
install_missing "${need_install[@]}"
command -v python3 >/dev/null 2>&1 || die "python3 is required (used to pick free ports)"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx not found; install it with: apt-get install -y nginx-light"
"$NGINX" -V 2>&1 | grep -q -- --with-http_v2_module \
    || die "$NGINX has no HTTP/2 module (--with-http_v2_module); install nginx-light or nginx-core"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- edgeward binary
cd "$REPO_ROOT"
resolve_edgeward "$EDGEWARD"

# ---------------------------------------------------------------- work dir + cleanup
make_workdir tls-bench
CLIENT_PIDS=()   # the s_time clients of a handshake run in progress
bench_stop_extra() {
    local p
    for p in "${CLIENT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${CLIENT_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
bench_traps

# ---------------------------------------------------------------- ports
read -r UP_PORT EW_HTTP EW_TLS NX_HTTP NX_TLS < <(free_ports 5)
[[ -n "${NX_TLS:-}" ]] || die "could not pick free ports"
log "work dir $WORK; ports: upstream=$UP_PORT edgeward=$EW_HTTP/$EW_TLS (http/https) nginx=$NX_HTTP/$NX_TLS"

# ---------------------------------------------------------------- certificate
# One self-signed ECDSA P-256 certificate for bench.local, served by both.
CERT_DIR="$WORK/cert"
mkdir -p "$CERT_DIR"
CERT="$CERT_DIR/cert.pem"
KEY="$CERT_DIR/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 7 -subj /CN=bench.local \
    -addext subjectAltName=DNS:bench.local >"$CERT_DIR/req.log" 2>&1 \
    || { cat "$CERT_DIR/req.log" >&2; die "openssl req could not make the certificate"; }

# Mozilla intermediate (v5), exactly what edgeward's TLS listener gets from
# Pingora (SslAcceptor::mozilla_intermediate_v5): TLS 1.2 ciphers, TLS 1.3
# suites, no server preference.
TLS12_CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
TLS13_SUITES="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

# ---------------------------------------------------------------- upstream (origin)
start_origin "$UP_PORT"

# ---------------------------------------------------------------- edgeward
EW_DIR="$WORK/edgeward"
mkdir -p "$EW_DIR" "$WORK/logs/bench"
cat >"$EW_DIR/edgeward.yaml" <<EOF
listen: ["127.0.0.1:$EW_HTTP"]
threads: $THREADS
grace_period: 1s
tls:
  listen: ["127.0.0.1:$EW_TLS"]
  # s_time sends no SNI: it gets this one (the same certificate).
  default_certificate: { certificate: "$CERT", key: "$KEY" }
accounts:
  bench:
    log_dir: $WORK/logs/bench
    sites:
      site:
        addresses: ["bench.local"]
        tls: { certificate: "$CERT", key: "$KEY" }
        upstream:
          address: "127.0.0.1:$UP_PORT"
        access_log: { enabled: false }   # as nginx's access_log off
EOF
"$EDGEWARD" check -c "$EW_DIR/edgeward.yaml" >"$EW_DIR/check.log" 2>&1 \
    || { cat "$EW_DIR/check.log" >&2; die "edgeward check rejected $EW_DIR/edgeward.yaml (a binary without HTTPS?)"; }
start_bg edgeward env RUST_LOG=warn "$EDGEWARD" run -c "$EW_DIR/edgeward.yaml"
EW_PID=$LAST_PID
wait_ready edgeward "$EW_PID" "http://127.0.0.1:$EW_HTTP/" bench.local 30

# ---------------------------------------------------------------- nginx
NX_DIR="$WORK/nginx"
mkdir -p "$NX_DIR/tmp"
{
    nginx_main "$NX_DIR" "$THREADS"
    echo "http {"
    nginx_http_common "$NX_DIR"
    cat <<EOF
$(nginx_proxy_upstream "$UP_PORT")
    server {
        listen 127.0.0.1:$NX_HTTP;
        listen 127.0.0.1:$NX_TLS ssl http2;
        server_name bench.local;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $TLS12_CIPHERS;
        ssl_conf_command Ciphersuites $TLS13_SUITES;
        ssl_prefer_server_ciphers off;
        # Session tickets on, as edgeward issues them (TLS 1.2 and 1.3): both
        # sides do the same work per handshake. No server-side session cache
        # (edgeward has none). s_time -new never resumes: every handshake is
        # a full one.
        ssl_session_cache off;
        ssl_session_tickets on;
$(nginx_proxy_location)
    }
}
EOF
} >"$NX_DIR/nginx.conf"
start_bg nginx "$NGINX" -p "$NX_DIR" -e "$NX_DIR/error.log" -c "$NX_DIR/nginx.conf"
NX_PID=$LAST_PID
wait_ready nginx "$NX_PID" "http://127.0.0.1:$NX_HTTP/" bench.local 10

NAMES=(edgeward nginx)
declare -A PID=([edgeward]=$EW_PID [nginx]=$NX_PID)
declare -A HTTP_PORT=([edgeward]=$EW_HTTP [nginx]=$NX_HTTP)
declare -A TLS_PORT=([edgeward]=$EW_TLS [nginx]=$NX_TLS)

# ---------------------------------------------------------------- sanity + what was negotiated
# curl verifies the certificate for bench.local (SNI) against our own file.
https_get() {   # SERVER HTTP-VERSION-OPTION HEADERS-OUT -> body, then "|<http_version>"
    curl -s --max-time 2 "$2" --cacert "$CERT" -D "$3" -w '|%{http_version}' \
        --resolve "bench.local:${TLS_PORT[$1]}:127.0.0.1" "https://bench.local:${TLS_PORT[$1]}/"
}
for p in "${NAMES[@]}"; do
    body=$(curl -s --max-time 2 -H 'Host: bench.local' "http://127.0.0.1:${HTTP_PORT[$p]}/") || true
    [[ "$body" == "$EXPECTED_BODY" ]] || die "$p (http) returned '$body', expected '$EXPECTED_BODY'"
    deadline=$(( SECONDS + 10 ))
    until out=$(https_get "$p" --http1.1 "$RAW/headers-$p-h1.txt"); do
        (( SECONDS < deadline )) || die "$p: no HTTPS answer on port ${TLS_PORT[$p]}"
        sleep 0.1
    done
    [[ "$out" == "$EXPECTED_BODY"$'\n|1.1' ]] || die "$p (https, HTTP/1.1) returned '$out'"
    out=$(https_get "$p" --http2 "$RAW/headers-$p-h2.txt") || true
    [[ "$out" == "$EXPECTED_BODY"$'\n|2' ]] || die "$p (https, ALPN h2) returned '$out', expected HTTP/2"
done

# The request of the hs-req test. s_time sends "GET <path> HTTP/1.0\r\n\r\n"
# and no SNI; the path carries the rest of a real HTTP/1.1 request, so the
# server sees Host and Connection: close (and a trailing header "X-Bench: 1
# HTTP/1.0") and closes after its answer.
HS_WWW=$'/ HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\nX-Bench: 1'

# probe SERVER VERSION-OPTION : "protocol cipher key-exchange signature tickets status"
# from one s_client connection sending the hs-req request (no SNI, as s_time).
probe() {
    local p=$1 v=$2 f="$RAW/probe-$1$2.txt"
    printf 'GET %s HTTP/1.0\r\n\r\n' "$HS_WWW" \
        | timeout 10 openssl s_client -connect "127.0.0.1:${TLS_PORT[$p]}" "$v" -alpn http/1.1 -msg -ign_eof >"$f" 2>&1 || true
    awk '
        /^New, TLSv/            { split($0, a, ", "); proto = a[2]; sub(/^Cipher is /, "", a[3]); cipher = a[3] }
        /^Server Temp Key:/     { sub(/^Server Temp Key: /, ""); sub(/, /, "-"); sub(/ bits/, ""); kx = $0 }
        /^Peer signature type:/ { sig = $4 }
        /NewSessionTicket/      { tickets++ }
        /^HTTP\/1\.1 /          { status = $2 }
        END { printf "%s %s %s %s %d %s\n", proto, cipher, kx, sig, tickets, (status == "" ? "none" : status) }' "$f"
}
declare -A NEGOTIATED
for v in -tls1_3 -tls1_2; do
    for p in "${NAMES[@]}"; do
        NEGOTIATED[$p,$v]=$(probe "$p" "$v")
        read -r _ _ _ _ _ status <<<"${NEGOTIATED[$p,$v]}"
        [[ "$status" == 200 ]] || die "$p ($v, no SNI, the hs-req request) answered '$status', not 200; see $RAW/probe-$p$v.txt"
    done
    read -r a1 a2 a3 a4 _ <<<"${NEGOTIATED[edgeward,$v]}"; read -r b1 b2 b3 b4 _ <<<"${NEGOTIATED[nginx,$v]}"
    [[ "$a1 $a2 $a3 $a4" == "$b1 $b2 $b3 $b4" ]] \
        || log "note: $v negotiates differently: edgeward '$a1 $a2 $a3 $a4', nginx '$b1 $b2 $b3 $b4'"
done

# ---------------------------------------------------------------- measuring
# server_ticks (bench/lib.sh): CPU time of a server's whole session.
now_ns() { date +%s%N; }

# Results per row key (test, or test-cC) and server, one value per round.
declare -A TPUT CPU LAT1 LAT2 ERRS
ROW_KEYS=()
declare -A ROW_TEST ROW_CONNS
add_row() { ROW_KEYS+=("$1"); ROW_TEST[$1]=$2; ROW_CONNS[$1]=$3; }

# record KEY SERVER THROUGHPUT OPS TICKS LAT1 LAT2 ERRORS
record() {
    local cpu
    cpu=$(awk -v t="$5" -v hz="$CLK_TCK" -v n="$4" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan" }')
    TPUT[$1,$2]+="$3 "; CPU[$1,$2]+="$cpu "; LAT1[$1,$2]+="$6 "; LAT2[$1,$2]+="$7 "
    ERRS[$1,$2]=$(( ${ERRS[$1,$2]:-0} + $8 ))
}

# s_time runs: HS_CLIENTS clients in parallel for DURATION seconds; the rate
# is the connections they completed over the wall time of the run.
run_s_time() {   # SERVER OUT-PREFIX SECONDS S_TIME-ARGS...
    local p=$1 out=$2 secs=$3 i rc=0 n t0 t1 w0 w1
    shift 3
    kill -0 "${PID[$p]}" 2>/dev/null || die "$p (pid ${PID[$p]}) died during the benchmark; see $WORK/$p.log"
    CLIENT_PIDS=()
    t0=$(server_ticks "${PID[$p]}"); w0=$(now_ns)
    for (( i = 1; i <= HS_CLIENTS; i++ )); do
        openssl s_time -connect "127.0.0.1:${TLS_PORT[$p]}" -new -time "$secs" "$@" </dev/null >"$out.$i" 2>&1 &
        CLIENT_PIDS+=($!)
    done
    for i in "${CLIENT_PIDS[@]}"; do wait "$i" || rc=$?; done
    w1=$(now_ns); t1=$(server_ticks "${PID[$p]}")
    CLIENT_PIDS=()
    (( rc == 0 )) || { tail -n 5 "$out".* >&2; die "openssl s_time failed against $p (exit $rc)"; }
    n=$(awk '/ connections in .* real seconds/ { n += $1 } END { print n + 0 }' "$out".*)
    (( n > 0 )) || { tail -n 5 "$out".* >&2; die "openssl s_time made no connection to $p"; }
    S_TIME_N=$n
    S_TIME_RATE=$(awk -v n="$n" -v ns=$(( w1 - w0 )) 'BEGIN { printf "%.1f", n / (ns / 1e9) }')
    S_TIME_TICKS=$(( t1 - t0 ))
}

measure_hs() {   # KEY SERVER OUT S_TIME-ARGS...
    local key=$1 p=$2 out=$3
    shift 3
    run_s_time "$p" "$out" "$DURATION" "$@"
    record "$key" "$p" "$S_TIME_RATE" "$S_TIME_N" "$S_TIME_TICKS" - - 0
}

measure_wrk() {   # KEY SERVER OUT CONNS SCHEME
    local key=$1 p=$2 out=$3 c=$4 url t0 t1 parsed rps p50 p99 errs reqs
    if [[ $5 == https ]]; then url="https://127.0.0.1:${TLS_PORT[$p]}/"; else url="http://127.0.0.1:${HTTP_PORT[$p]}/"; fi
    t0=$(server_ticks "${PID[$p]}")
    run_wrk "$p" "${PID[$p]}" "$out" -t1 -c"$c" -d"${DURATION}s" --latency -H 'Host: bench.local' "$url"
    t1=$(server_ticks "${PID[$p]}")
    parsed=$(parse_wrk "$out"); read -r rps p50 p99 errs reqs <<<"$parsed"
    record "$key" "$p" "$rps" "$reqs" $(( t1 - t0 )) "$p50" "$p99" "$errs"
}

# h2load output: "finished in 10.00s, 12345.60 req/s, ..." and
# "requests: N total, N started, N done, N succeeded, F failed, E errored, T timeout"
# (failed counts the errored and timed-out ones and 4xx/5xx answers) and
# "time for request:  min  max  mean  sd  +/-sd".
H2LOAD_PID=""
run_h2load() {   # SERVER OUT SECONDS CONNS
    local p=$1 out=$2
    kill -0 "${PID[$p]}" 2>/dev/null || die "$p (pid ${PID[$p]}) died during the benchmark; see $WORK/$p.log"
    h2load -t1 -c"$4" -m"$STREAMS" -D "$3" -H ':authority: bench.local' \
        "https://127.0.0.1:${TLS_PORT[$p]}/" </dev/null >"$out" 2>&1 &
    H2LOAD_PID=$!
    CLIENT_PIDS=("$H2LOAD_PID")
    wait "$H2LOAD_PID" || { CLIENT_PIDS=(); cat "$out" >&2; die "h2load failed against $p"; }
    CLIENT_PIDS=()
}
parse_h2load() {   # FILE -> "rps mean_ms max_ms errors succeeded"
    local file=$1 line mean max
    line=$(awk '
        /^finished in/          { rps = $4 }
        /^requests:/            { gsub(/,/, ""); ok = $8; bad = $10 }   # failed: errors, timeouts, 4xx, 5xx
        /^time for request:/    { max = $5; mean = $6 }
        END { if (rps == "" || ok == "") exit 1; printf "%s %s %s %d %d\n", rps, mean, max, bad, ok }' "$file") \
        || { cat "$file" >&2; die "could not parse h2load output $file"; }
    read -r rps mean max bad ok <<<"$line"
    printf '%s %s %s %s %s\n' "$rps" "$(to_ms "$mean")" "$(to_ms "$max")" "$bad" "$ok"
}
measure_h2() {   # KEY SERVER OUT CONNS
    local key=$1 p=$2 out=$3 t0 t1 parsed rps mean max bad ok
    t0=$(server_ticks "${PID[$p]}")
    run_h2load "$p" "$out" "$DURATION" "$4"
    t1=$(server_ticks "${PID[$p]}")
    parsed=$(parse_h2load "$out"); read -r rps mean max bad ok <<<"$parsed"
    record "$key" "$p" "$rps" "$ok" $(( t1 - t0 )) "$mean" "$max" "$bad"
}

for t in "${TEST_LIST[@]}"; do
    case "$t" in
        hs|hs-req|hs12) add_row "$t" "$t" - ;;
        *) for c in "${CONNS[@]}"; do add_row "$t-c$c" "$t" "$c"; done ;;
    esac
done

max_c=0
for c in "${CONNS[@]}"; do (( c > max_c )) && max_c=$c; done
if (( WARMUP > 0 )); then
    for p in "${NAMES[@]}"; do
        log "warm-up: $p, ${WARMUP}s https (wrk -c$max_c), ${WARMUP}s handshakes"
        run_wrk "$p" "${PID[$p]}" "$RAW/warmup-$p.txt" -t1 -c"$max_c" -d"${WARMUP}s" \
            -H 'Host: bench.local' "https://127.0.0.1:${TLS_PORT[$p]}/"
        run_s_time "$p" "$RAW/warmup-$p-s_time" "$WARMUP"
    done
fi

for key in "${ROW_KEYS[@]}"; do
    t=${ROW_TEST[$key]}; c=${ROW_CONNS[$key]}
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in "${NAMES[@]}"; do
            out="$RAW/$key-$p-r$r.txt"
            log "measure: $key round $r/$ROUNDS $p (${DURATION}s)"
            case "$t" in
                hs)     measure_hs "$key" "$p" "$out" ;;
                hs-req) measure_hs "$key" "$p" "$out" -www "$HS_WWW" ;;
                hs12)   measure_hs "$key" "$p" "$out" -tls1_2 ;;
                https)  measure_wrk "$key" "$p" "$out" "$c" https ;;
                http)   measure_wrk "$key" "$p" "$out" "$c" http ;;
                h2)     measure_h2 "$key" "$p" "$out" "$c" ;;
            esac
        done
    done
done

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
[[ -n "$cpu_model" ]] || cpu_model=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }' || true)

describe() {   # ROW-KEY -> test description
    local t=${ROW_TEST[$1]} c=${ROW_CONNS[$1]}
    case "$t" in
        hs)     echo "full handshakes/s, TLS 1.3, no request (s_time -new, ${HS_CLIENTS} clients)" ;;
        hs-req) echo "full handshakes/s, TLS 1.3, 1 request each (s_time -new -www, ${HS_CLIENTS} clients)" ;;
        hs12)   echo "full handshakes/s, TLS 1.2, no request (s_time -new -tls1_2, ${HS_CLIENTS} clients)" ;;
        https)  echo "HTTPS keep-alive req/s, HTTP/1.1 (wrk -t1 -c$c)" ;;
        h2)     echo "HTTP/2 over TLS req/s (h2load -t1 -c$c -m$STREAMS)" ;;
        http)   echo "plain HTTP keep-alive req/s, HTTP/1.1 (wrk -t1 -c$c; bench/proxy.sh's test)" ;;
    esac
}
lat_fmt() { if [[ "$1" == - ]]; then echo -; else printf '%.3f' "$(median "$@")"; fi; }   # VALUES...
k_fmt() { awk -v v="$1" 'BEGIN { if (v >= 10000) printf "%.1fk", v / 1000; else printf "%.0f", v }'; }
goal_line=""

echo "## HTTPS benchmark: edgeward vs nginx"
echo
echo "- command: \`$CMDLINE\`"
echo "- started: $START_DATE, finished: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); load average before the run: $LOAD_BEFORE"
echo "- cores (nproc): $(nproc); cpu: ${cpu_model:-unknown}; kernel: $(uname -sr)"
echo "- edgeward: $("$EDGEWARD" --version 2>&1 | head -n1) ($EDGEWARD), \`threads: $THREADS\`"
nginx_version=$("$NGINX" -v 2>&1 | head -n1); nginx_version=${nginx_version#nginx version: }
echo "- nginx: $nginx_version, \`worker_processes $THREADS\`"
libssl() { ldd "$1" 2>/dev/null | awk '$1 ~ /^libssl/ { print $3; exit }'; }
echo "- TLS library: $(openssl version | awk '{print $1, $2}'); libssl used by edgeward: $(libssl "$EDGEWARD"), nginx: $(libssl "$NGINX"), s_time: $(libssl "$(command -v openssl)"), wrk: $(libssl "$(command -v wrk)"), h2load: $(libssl "$(command -v h2load)")"
echo "- clients: $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'), h2load $(h2load --version 2>&1 | awk '{print $2}'), openssl s_time"
echo "- setup: ${DURATION}s per run, $ROUNDS alternating round(s) per test (edgeward, nginx, ...), ${WARMUP}s warm-up per server; origin = nginx (1 worker) \`return 200\` ($(( ${#EXPECTED_BODY} + 1 )) byte body), keep-alive from both proxies; access logs off on both; all on 127.0.0.1"
echo "- certificate: one self-signed ECDSA P-256 (prime256v1) certificate for bench.local, made with \`openssl req\`, served by both; TLS 1.2 + 1.3, Mozilla intermediate ciphers; nginx \`ssl_session_cache off; ssl_session_tickets on\`, edgeward issues tickets under its own rotating keys; s_time \`-new\` never resumes, so every handshake is a full one"
for v in -tls1_3 -tls1_2; do
    for p in "${NAMES[@]}"; do
        read -r proto cipher kx sig tickets _ <<<"${NEGOTIATED[$p,$v]}"
        echo "- negotiated ($p, s_client $v): $proto, $cipher, key exchange $kx, $sig signature, $tickets NewSessionTicket message(s) sent"
    done
done
echo
echo "Throughput: medians over the rounds. Server CPU: user + system time of the server's processes (edgeward: the process; nginx: master + workers; the origin is not counted) during the run, per handshake or request, median over the rounds. \"CPU ratio\" = nginx µs / edgeward µs: edgeward's throughput relative to nginx's if the server's own CPU were the limit."
echo
echo "| test | edgeward | nginx | edgeward/nginx | edgeward server CPU µs/op | nginx server CPU µs/op | CPU ratio |"
echo "|:-----|---------:|------:|---------------:|--------------------------:|-----------------------:|----------:|"
for key in "${ROW_KEYS[@]}"; do
    # shellcheck disable=SC2086  # intentional word splitting of the value lists
    a=$(median ${TPUT[$key,edgeward]})
    # shellcheck disable=SC2086
    b=$(median ${TPUT[$key,nginx]})
    # shellcheck disable=SC2086
    ca=$(median ${CPU[$key,edgeward]})
    # shellcheck disable=SC2086
    cb=$(median ${CPU[$key,nginx]})
    printf '| %s | %s | %s | %s | %.0f | %.0f | %s |\n' "$(describe "$key")" "$(k_fmt "$a")" "$(k_fmt "$b")" \
        "$(ratio "$a" "$b")" "$ca" "$cb" "$(ratio "$cb" "$ca")"
    if [[ "${ROW_TEST[$key]}" == hs ]]; then
        goal_line="Goal (issue): full handshakes >= 0.9 x nginx. TLS 1.3, no request: throughput $(ratio "$a" "$b") x, server CPU $(ratio "$cb" "$ca") x."
    fi
done
echo
echo "Per run detail (medians; latency: wrk p50 / p99, h2load mean / max, in ms; errors: socket errors, failed requests and non-2xx answers, summed over the rounds):"
echo
echo "| test | server | throughput | all rounds | latency 1 | latency 2 | errors |"
echo "|:-----|:-------|-----------:|:-----------|----------:|----------:|-------:|"
for key in "${ROW_KEYS[@]}"; do
    for p in "${NAMES[@]}"; do
        # shellcheck disable=SC2086
        printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$key" "$p" "$(median ${TPUT[$key,$p]})" \
            "$(printf '%.0f ' ${TPUT[$key,$p]} | sed 's/ $//')" \
            "$(lat_fmt ${LAT1[$key,$p]})" "$(lat_fmt ${LAT2[$key,$p]})" \
            "${ERRS[$key,$p]}"
    done
done
echo
[[ -z "$goal_line" ]] || { echo "$goal_line"; echo; }

SUCCESS=1
if (( CLEAN )); then
    echo "Raw output deleted (--clean)."
else
    echo "Raw output, configs, certificate and logs: \`$WORK\`"
fi
