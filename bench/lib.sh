# shellcheck shell=bash
# Shell helpers shared by the benchmarks in bench/ (sourced, not run).
# The caller sets BENCH_TAG (log prefix) and WORK (its work dir), and keeps
# the pids it starts in PIDS (start_bg appends to it).

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
