#!/usr/bin/env bash
# Slow and idle clients: does a normal client still get fast answers?
#
# For each server (edgeward, then nginx as the reference, alternating over
# rounds), in front of the same nginx origin:
#   1. idle server: a normal client's latency (wrk, few connections);
#   2. with 500 slowloris connections (a partial request head, one more
#      header line every second, reconnecting when closed) and 5,000 idle
#      keep-alive connections (one request each, then silence, reconnecting
#      when closed) held open by a Python asyncio client: the same wrk run,
#      and the server's RSS (all its processes) before and under load.
# Reports p50/p99 under load against idle (goal: within 2x) and the RSS.
# Progress goes to stderr, the markdown report to stdout. See bench/README.md.
#
# Usage: bench/slowloris.sh [--edgeward PATH] [--threads N] [--duration S]
#                           [--rounds R] [--slowloris N] [--idle N]
#                           [--connections C] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/slowloris.sh [options]

  --edgeward PATH     edgeward binary (default: target/release/edgeward;
                      built by scripts/build if missing)
  --threads N         edgeward threads = nginx worker_processes (default 1)
  --duration S        each measured wrk run, seconds (default 10)
  --rounds R          rounds, servers alternating (default 2)
  --slowloris N       slowloris connections (default 500)
  --idle N            idle keep-alive connections (default 5000)
  --connections C     wrk connections of the normal client (default 4)
  --clean             delete the work dir at the end
  -h, --help          this help
EOF
}

BENCH_TAG=slowloris-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

EDGEWARD=""
THREADS=1
DURATION=10
ROUNDS=2
SLOW=500
IDLE=5000
CONNS=4
CLEAN=0
while (( $# )); do
    case "$1" in
        --edgeward)    EDGEWARD=${2:?--edgeward needs a path}; shift 2 ;;
        --threads)     THREADS=${2:?--threads needs a value}; shift 2 ;;
        --duration)    DURATION=${2:?--duration needs a value}; shift 2 ;;
        --rounds)      ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --slowloris)   SLOW=${2:?--slowloris needs a value}; shift 2 ;;
        --idle)        IDLE=${2:?--idle needs a value}; shift 2 ;;
        --connections) CONNS=${2:?--connections needs a value}; shift 2 ;;
        --clean)       CLEAN=1; shift ;;
        -h|--help)     usage; exit 0 ;;
        *)             usage >&2; die "unknown argument: $1" ;;
    esac
done
for v in THREADS DURATION ROUNDS SLOW IDLE CONNS; do
    is_uint "${!v}" || die "--${v,,} must be a positive integer"
done

need_install=()
have wrk   || need_install+=(wrk)
have curl  || need_install+=(curl)
have nginx || need_install+=(nginx-light)
install_missing "${need_install[@]}"
command -v python3 >/dev/null 2>&1 || die "python3 is required (the slow and idle clients)"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# Client and servers each hold SLOW + IDLE sockets (plus the origin's).
need_fds=$(( SLOW + IDLE + 1000 ))
if (( $(ulimit -n) < need_fds )); then
    ulimit -n "$need_fds" 2>/dev/null || die "need $need_fds open files (ulimit -n is $(ulimit -n))"
fi

cd "$REPO_ROOT"
resolve_edgeward "$EDGEWARD"
make_workdir slowloris-bench
bench_traps

read -r UP_PORT PORT_A PORT_B < <(free_ports 3)
[[ -n "${PORT_B:-}" ]] || die "could not pick free ports"
log "work dir $WORK; ports: upstream=$UP_PORT edgeward=$PORT_A nginx=$PORT_B"
start_origin "$UP_PORT"

# ---------------------------------------------------------------- edgeward
EW_DIR="$WORK/edgeward"
mkdir -p "$EW_DIR" "$WORK/logs/bench"
cat >"$EW_DIR/edgeward.yaml" <<EOF
listen: ["127.0.0.1:$PORT_A"]
threads: $THREADS
grace_period: 1s
limits:                       # the defaults, written out
  header_timeout: 10s
  keepalive_timeout: 60s
  max_connections: 20000
accounts:
  bench:
    log_dir: $WORK/logs/bench
    sites:
      site:
        addresses: ["bench.local"]
        upstream:
          address: "127.0.0.1:$UP_PORT"
        access_log: { enabled: false }
EOF
start_bg edgeward env RUST_LOG=warn "$EDGEWARD" run -c "$EW_DIR/edgeward.yaml"
EW_PID=$LAST_PID
wait_ready edgeward "$EW_PID" "http://127.0.0.1:$PORT_A/" bench.local 30

# ---------------------------------------------------------------- nginx
NX_DIR="$WORK/nginx"
mkdir -p "$NX_DIR/tmp"
{
    nginx_main "$NX_DIR" "$THREADS" | sed 's/worker_connections [0-9]*/worker_connections 20000/'
    echo "worker_rlimit_nofile $(( need_fds * 2 ));"
    echo "http {"
    nginx_http_common "$NX_DIR"
    cat <<EOF
    client_header_timeout 10s;
    upstream origin {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$PORT_B;
        server_name bench.local;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
} >"$NX_DIR/nginx.conf"
start_bg nginx "$NGINX" -p "$NX_DIR" -e "$NX_DIR/error.log" -c "$NX_DIR/nginx.conf"
NX_PID=$LAST_PID
wait_ready nginx "$NX_PID" "http://127.0.0.1:$PORT_B/" bench.local 10

# ---------------------------------------------------------------- the slow and idle clients
cat >"$WORK/clients.py" <<'EOF'
# Hold SLOW slowloris and IDLE idle keep-alive connections to PORT until
# killed; write "slow_open idle_open idle_served slow_closed idle_closed"
# to STATUS every 0.5 s.
import asyncio, sys, os
port, slow, idle, status = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
st = {"slow_open": 0, "idle_open": 0, "idle_served": 0, "slow_closed": 0, "idle_closed": 0}
REQ = b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n"

async def slowloris(i):
    while True:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5); continue
        st["slow_open"] += 1
        try:
            w.write(b"GET /slow HTTP/1.1\r\nHost: bench.local\r\n"); await w.drain()
            n = 0
            while True:
                # One more header line a second; a closed connection ends it.
                try:
                    data = await asyncio.wait_for(r.read(4096), 1.0)
                    if not data: break
                except asyncio.TimeoutError:
                    pass
                w.write(b"X-%d: %d\r\n" % (n, i)); await w.drain(); n += 1
        except OSError:
            pass
        finally:
            st["slow_open"] -= 1; st["slow_closed"] += 1
            w.close()

async def idle_conn(i):
    while True:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5); continue
        st["idle_open"] += 1
        try:
            w.write(REQ); await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await r.readexactly(length)
            st["idle_served"] += 1
            # Then silence until the server closes.
            await r.read(1)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            st["idle_open"] -= 1; st["idle_closed"] += 1
            w.close()

async def report():
    while True:
        with open(status + ".tmp", "w") as f:
            f.write("%(slow_open)d %(idle_open)d %(idle_served)d %(slow_closed)d %(idle_closed)d\n" % st)
        os.replace(status + ".tmp", status)
        await asyncio.sleep(0.5)

async def main():
    tasks = [asyncio.create_task(report())]
    for i in range(idle):
        tasks.append(asyncio.create_task(idle_conn(i)))
        if i % 200 == 0: await asyncio.sleep(0.05)   # no SYN flood
    for i in range(slow):
        tasks.append(asyncio.create_task(slowloris(i)))
    await asyncio.gather(*tasks)

asyncio.run(main())
EOF

# rss_kb PID: resident memory of PID's process group (the server and its
# workers), in KiB.
rss_kb() { ps -o rss= -g "$1" | awk '{ s += $1 } END { print s + 0 }'; }

# start_clients PORT NAME: the slow and idle clients against PORT; waits
# until every idle connection was served once and every slowloris is open.
start_clients() {
    local port=$1 name=$2 deadline=$(( SECONDS + 120 )) s
    rm -f "$RAW/status-$name"
    start_bg "clients-$name" python3 "$WORK/clients.py" "$port" "$SLOW" "$IDLE" "$RAW/status-$name"
    CL_PID=$LAST_PID
    while :; do
        kill -0 "$CL_PID" 2>/dev/null || die "the clients died (see $WORK/clients-$name.log)"
        s=$(cat "$RAW/status-$name" 2>/dev/null || echo "0 0 0 0 0")
        read -r so io is _ _ <<<"$s"
        (( so >= SLOW && io >= IDLE && is >= IDLE )) && break
        (( SECONDS < deadline )) || die "$name: clients not all connected after 120s (slow_open idle_open idle_served: $so $io $is)"
        sleep 0.2
    done
    log "$name: $SLOW slowloris + $IDLE idle connections open"
}
stop_clients() { stop_pid "$CL_PID"; CL_PID=""; }
CL_PID=""
bench_stop_extra() { [[ -z "$CL_PID" ]] || stop_pid "$CL_PID"; }

NAMES=(edgeward nginx)
declare -A PORT=([edgeward]=$PORT_A [nginx]=$PORT_B)
declare -A PID=([edgeward]=$EW_PID [nginx]=$NX_PID)
declare -A IP50 IP99 LP50 LP99 IRPS LRPS RSS0 RSS1 SLOWCLOSED

measure() {  # measure NAME OUT
    run_wrk "$1" "${PID[$1]}" "$2" -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        -H 'Host: bench.local' "http://127.0.0.1:${PORT[$1]}/"
}

for p in "${NAMES[@]}"; do       # warm-up
    measure "$p" "$RAW/warmup-$p.txt"
done
for (( r = 1; r <= ROUNDS; r++ )); do
    for p in "${NAMES[@]}"; do
        log "round $r: $p idle"
        RSS0[$p]+="$(rss_kb "${PID[$p]}") "
        measure "$p" "$RAW/idle-$p-r$r.txt"
        read -r rps p50 p99 errs _ <<<"$(parse_wrk "$RAW/idle-$p-r$r.txt")"
        (( errs == 0 )) || die "$p: $errs errors with an idle server"
        IRPS[$p]+="$rps "; IP50[$p]+="$p50 "; IP99[$p]+="$p99 "
        start_clients "${PORT[$p]}" "$p"
        RSS1[$p]+="$(rss_kb "${PID[$p]}") "
        log "round $r: $p under slow/idle load"
        measure "$p" "$RAW/load-$p-r$r.txt"
        read -r rps p50 p99 errs _ <<<"$(parse_wrk "$RAW/load-$p-r$r.txt")"
        (( errs == 0 )) || die "$p: $errs errors under load"
        LRPS[$p]+="$rps "; LP50[$p]+="$p50 "; LP99[$p]+="$p99 "
        read -r _ _ _ sc _ <"$RAW/status-$p"
        SLOWCLOSED[$p]+="$sc "
        stop_clients
    done
done

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo "## Slow and idle clients: edgeward vs nginx"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); nproc: $(nproc); cpu: ${cpu_model:-unknown}"
echo "- nginx: $("$NGINX" -v 2>&1 | head -n1); edgeward: $("$EDGEWARD" --version 2>&1 | head -n1)"
echo "- setup: threads/workers=$THREADS; normal client wrk -t1 -c$CONNS ${DURATION}s; load = $SLOW slowloris (a header line a second) + $IDLE idle keep-alive connections; header timeout 10s and keep-alive 60s on both; $ROUNDS round(s), servers alternating; all on 127.0.0.1"
echo
echo "| server | idle p50 ms | loaded p50 ms | p50 x | idle p99 ms | loaded p99 ms | p99 x | idle req/s | loaded req/s | RSS idle MiB | RSS loaded MiB | slowloris closed by the server |"
echo "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
# shellcheck disable=SC2086  # word splitting wanted: one argument per sample
for p in "${NAMES[@]}"; do
    ip50=$(median ${IP50[$p]}); lp50=$(median ${LP50[$p]}); ip99=$(median ${IP99[$p]}); lp99=$(median ${LP99[$p]})
    # shellcheck disable=SC2086
    printf '| %s | %.3f | %.3f | %s | %.3f | %.3f | %s | %.0f | %.0f | %.1f | %.1f | %s |\n' "$p" \
        "$ip50" "$lp50" "$(ratio "$lp50" "$ip50")" "$ip99" "$lp99" "$(ratio "$lp99" "$ip99")" \
        "$(median ${IRPS[$p]})" "$(median ${LRPS[$p]})" \
        "$(awk -v k="$(median ${RSS0[$p]})" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$(median ${RSS1[$p]})" 'BEGIN { print k / 1024 }')" \
        "${SLOWCLOSED[$p]% }"
done
echo
echo "RSS: every process of the server (nginx: master and workers), before the"
echo "clients connect and once all of them are connected. \"slowloris closed\":"
echo "slowloris connections ended during the round (header timeout), per round."
SUCCESS=1
if (( CLEAN )); then echo "Raw output deleted (--clean)."; else echo "Raw output: \`$WORK\`"; fi
