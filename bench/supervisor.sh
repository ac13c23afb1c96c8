#!/usr/bin/env bash
# Supervisor benchmark: what edgeward's upstream supervisor costs.
#
# 1. Cold start: N times, start edgeward fresh, send ONE request to a site
#    whose upstream is a program (`upstream.command`) that is not running yet,
#    and take curl's time to first byte. The program (bench/fixtures/
#    timed_app.py) prints its own start-to-listening time into the sites log;
#    overhead = TTFB - the program's own time.
# 2. Steady state: with the program running, wrk against the supervised site
#    (prog.local) and against a site whose upstream is a plain address
#    (addr.local), served by another instance of the same timed_app.py that
#    this script starts; interleaved prog,addr,prog,addr,... rounds.
#
# Prints a markdown report (machine facts, command line, results) to stdout;
# progress goes to stderr. See bench/README.md.
#
# Usage: bench/supervisor.sh [--edgeward PATH] [--runs N] [--threads N]
#                            [--duration SECONDS] [--rounds R]
#                            [--connections C] [--wrk-threads N]
#                            [--warmup SECONDS] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/supervisor.sh [options]

  --edgeward PATH       edgeward binary (default: target/release/edgeward;
                        built by scripts/build if missing)
  --runs N              cold starts to measure (default 20)
  --threads N           edgeward threads (default 1)
  --duration SECONDS    duration of each measured wrk run (default 10)
  --rounds R            interleaved prog,addr rounds (default 3; 0 skips the
                        steady-state part)
  --connections C       wrk connections (default 50)
  --wrk-threads N       wrk threads (default 1)
  --warmup SECONDS      warm-up wrk run per site before measuring (default 2)
  --clean               delete the work dir (configs, logs, raw output) at
                        the end instead of keeping it
  -h, --help            this help
EOF
}

BENCH_TAG=supervisor-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP_SRC="$REPO_ROOT/bench/fixtures/timed_app.py"

EDGEWARD=""
RUNS=20
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
        --runs)        RUNS=${2:?--runs needs a value}; shift 2 ;;
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

is_uint "$RUNS"        || die "--runs must be a positive integer"
is_uint "$THREADS"     || die "--threads must be a positive integer"
is_uint "$DURATION"    || die "--duration must be a positive integer (seconds)"
[[ "$ROUNDS" =~ ^[0-9]+$ ]] || die "--rounds must be a non-negative integer"
is_uint "$CONNS"       || die "--connections must be a positive integer"
is_uint "$WRK_THREADS" || die "--wrk-threads must be a positive integer"
(( CONNS >= WRK_THREADS )) || die "--connections $CONNS < --wrk-threads $WRK_THREADS (wrk needs >= 1 connection per thread)"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"
[[ -f "$APP_SRC" ]] || die "$APP_SRC is missing"

# ---------------------------------------------------------------- tools
need_install=()
have curl || need_install+=(curl)
if (( ROUNDS > 0 )); then have wrk || need_install+=(wrk); fi
install_missing "${need_install[@]}"
command -v python3 >/dev/null 2>&1 || die "python3 is required (used to pick free ports)"
# edgeward runs programs with this PATH (src/supervisor/mod.rs, MINIMAL_PATH);
# the origin instance uses the same, so both run the very same interpreter.
MINIMAL_PATH=/usr/local/bin:/usr/bin:/bin
PROG_PYTHON=$(PATH=$MINIMAL_PATH command -v python3 2>/dev/null) \
    || die "no python3 in $MINIMAL_PATH (the PATH edgeward gives its programs)"

# ---------------------------------------------------------------- edgeward binary
cd "$REPO_ROOT"
resolve_edgeward "$EDGEWARD"

# ---------------------------------------------------------------- work dir + cleanup
make_workdir supervisor-bench
APP="$WORK/app"
LOG_DIR="$WORK/logs"
PROG_LOG="$LOG_DIR/sites/prog.log"
mkdir -p "$APP" "$LOG_DIR" "$WORK/edgeward"
cp "$APP_SRC" "$APP/timed_app.py"

ORIGIN_PID=""   # the plain-address instance of timed_app.py
EW_PID=""       # the edgeward instance running now, if any
PROG_PID=""     # the supervised program's PID, once known
MON_PID=""      # the sampler of other heavy processes
NOTES=()        # anything that looked wrong; printed in the report

note() { NOTES+=("$*"); log "NOTE: $*"; }

# kill_program : the supervised program, if edgeward left it behind
# (edgeward starts it in a process group of its own: pgid = pid).
kill_program() {
    if [[ -n "$PROG_PID" ]] && kill -0 "$PROG_PID" 2>/dev/null; then
        kill -KILL -- "-$PROG_PID" 2>/dev/null || kill -KILL "$PROG_PID" 2>/dev/null || true
    fi
}

# Called by bench_cleanup on exit, after the wrk run is stopped.
bench_stop_extra() {
    if [[ -n "$MON_PID" ]]; then kill "$MON_PID" 2>/dev/null || true; wait "$MON_PID" 2>/dev/null || true; fi
    stop_pid "$EW_PID"        # SIGTERM: edgeward stops its program too
    kill_program
    stop_pid "$ORIGIN_PID"
}
bench_traps

# wait_line FILE REGEX DEADLINE_S : poll until a line of FILE matches; print it
wait_line() {
    local file=$1 re=$2 deadline=$(( SECONDS + $3 )) line
    while :; do
        line=$(grep -m1 -E -- "$re" "$file" 2>/dev/null) || line=""
        [[ -n "$line" ]] && { printf '%s\n' "$line"; return 0; }
        (( SECONDS < deadline )) || return 1
        sleep 0.02
    done
}

# wait_nth FILE REGEX N DEADLINE_S : poll until N lines of FILE match; print the Nth
wait_nth() {
    local file=$1 re=$2 n=$3 deadline=$(( SECONDS + $4 )) line
    while :; do
        line=$(grep -E -- "$re" "$file" 2>/dev/null | sed -n "${n}p") || line=""
        [[ -n "$line" ]] && { printf '%s\n' "$line"; return 0; }
        (( SECONDS < deadline )) || return 1
        sleep 0.02
    done
}

# ---------------------------------------------------------------- ports
# Bind both sockets at once so the ports are distinct, then release them.
read -r EDGE_PORT ORIGIN_PORT < <(free_ports 2)
[[ -n "${ORIGIN_PORT:-}" ]] || die "could not pick free ports"

# supervisor.port_range: a random 100-port window in 30000-39999 that holds
# neither port above and whose first ports (the ones a fresh edgeward hands
# out first) are free right now.
PFIRST=""
for (( attempt = 0; attempt < 50; attempt++ )); do
    first=$(( 30000 + RANDOM % 9901 )); last=$(( first + 99 ))
    (( EDGE_PORT >= first && EDGE_PORT <= last )) && continue
    (( ORIGIN_PORT >= first && ORIGIN_PORT <= last )) && continue
    if python3 - "$first" <<'EOF'
import socket, sys
first = int(sys.argv[1])
socks = []
for port in (first, first + 1, first + 2, first + 50):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as edgeward's check does
    s.bind(("127.0.0.1", port))                               # raises if taken
    socks.append(s)
EOF
    then PFIRST=$first; PLAST=$last; break; fi
done
[[ -n "$PFIRST" ]] || die "no free 100-port window found in 30000-39999"
log "work dir $WORK; ports: edgeward=$EDGE_PORT origin=$ORIGIN_PORT programs=$PFIRST-$PLAST"

# ---------------------------------------------------------------- other load
# Once a second, note builds and other benchmarks (by process name) that are
# not ours: they would skew the numbers. Reported at the end.
OTHERS="$RAW/other-processes.log"
: >"$OTHERS"
(
    while :; do
        pgrep -a -x 'cargo|rustc|clippy-driver|cc|ld|wrk' 2>/dev/null \
            | grep -v -F -e "$WORK" -e "127.0.0.1:$EDGE_PORT/" \
            | sed "s/^/$(date +%T) /" >>"$OTHERS" || true
        sleep 1
    done
) </dev/null >/dev/null 2>&1 &
MON_PID=$!

# ---------------------------------------------------------------- origin (plain address upstream)
# Same program, same interpreter, same environment as edgeward gives its
# programs (env cleared; PATH, HOME, LANG, IP, HOST, PORT).
setsid env -C "$APP" -i PATH="$MINIMAL_PATH" HOME="$APP" LANG=C.UTF-8 \
    IP=127.0.0.1 HOST=127.0.0.1 PORT="$ORIGIN_PORT" python3 timed_app.py \
    </dev/null >"$WORK/origin.log" 2>&1 &
ORIGIN_PID=$!
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/" localhost 15
EXPECTED_BODY="hello"

# ---------------------------------------------------------------- edgeward config
CONF="$WORK/edgeward/edgeward.yaml"
cat >"$CONF" <<EOF
listen: ["127.0.0.1:$EDGE_PORT"]
threads: $THREADS
grace_period: 2s
supervisor: { port_range: "$PFIRST-$PLAST" }
accounts:
  bench:
    log_dir: $LOG_DIR
    sites:
      prog:
        addresses: ["prog.local"]
        upstream:
          command: "python3 timed_app.py"
          working_dir: $APP
          idle_timeout: 0
          start_timeout: 30s
      addr:
        addresses: ["addr.local"]
        upstream:
          address: "127.0.0.1:$ORIGIN_PORT"
EOF
if ! check_out=$("$EDGEWARD" check -c "$CONF" 2>&1); then
    printf '%s\n' "$check_out" >&2
    die "$EDGEWARD rejects the benchmark config (a build without the supervisor? rebuild with scripts/build)"
fi

# start_edgeward NAME : start edgeward (own session), wait until it proxies addr.local.
# addr.local, not prog.local: a request for prog.local would start the program.
start_edgeward() {
    local name=$1
    setsid env RUST_LOG=warn "$EDGEWARD" run -c "$CONF" </dev/null >"$WORK/$name.log" 2>&1 &
    EW_PID=$!
    wait_ready "$name" "$EW_PID" "http://127.0.0.1:$EDGE_PORT/" addr.local 30
}

# stop_edgeward NAME : SIGTERM edgeward; check it also stopped its program
stop_edgeward() {
    local name=$1 deadline
    stop_pid "$EW_PID"
    EW_PID=""
    if [[ -n "$PROG_PID" ]]; then
        deadline=$(( SECONDS + 5 ))
        while kill -0 "$PROG_PID" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.05; done
        if kill -0 "$PROG_PID" 2>/dev/null; then
            note "$name: program PID $PROG_PID still running 5 s after edgeward exited; killed it"
            kill_program
        fi
        PROG_PID=""
    fi
    if grep -qE '^\[[^]]* (ERROR|WARN) |panicked' "$WORK/$name.log" 2>/dev/null; then
        note "$name: edgeward logged warnings/errors, see $WORK/$name.log"
    fi
}

# ---------------------------------------------------------------- part 1: cold starts
# One line per run (columns as in the header below)
COLD="$RAW/cold.tsv"
printf 'run\tttfb_ms\tlistening_after_ms\town_ms\tcpu_wait_ms\tscript_ms\tvol_switches\tpid\tfirst_request_after_listen_ms\tserving_after_listen_ms\n' >"$COLD"
for (( i = 1; i <= RUNS; i++ )); do
    name="edgeward-cold-$i"
    rm -f "$PROG_LOG"
    start_edgeward "$name"
    [[ ! -e "$PROG_LOG" ]] || die "$name: $PROG_LOG exists before the first prog.local request"
    out=$(curl -s -o "$RAW/cold-$i-body.txt" -w '%{http_code} %{time_starttransfer}' --max-time 60 \
        -H 'Host: prog.local' "http://127.0.0.1:$EDGE_PORT/") || true
    read -r code ttfb_s <<<"$out"
    [[ "${code:-}" == 200 ]] \
        || { tail -n 20 "$PROG_LOG" >&2 2>/dev/null || true; die "$name: cold request to prog.local returned HTTP ${code:-none}"; }
    body=$(<"$RAW/cold-$i-body.txt")
    [[ "$body" == "$EXPECTED_BODY" ]] || die "$name: prog.local returned body '$body', expected '$EXPECTED_BODY'"
    # Both lines come through edgeward's log writer thread: poll for them.
    started=$(wait_line "$PROG_LOG" 'Upstream started PID: [0-9]+' 10) \
        || die "$name: no 'Upstream started PID' line in $PROG_LOG"
    started_pid=$(sed -E 's/.*Upstream started PID: ([0-9]+).*/\1/' <<<"$started")
    PROG_PID=$started_pid
    line=$(wait_line "$PROG_LOG" '\] \[[0-9]+\] listening_after_ms=' 10) \
        || die "$name: the program's listening_after_ms line is not in $PROG_LOG"
    read -r pid a_ms b_ms c_ms d_ms nv < <(sed -E \
        's/.*\[([0-9]+)\] listening_after_ms=([0-9.]+) own_ms=([0-9.]+) cpu_wait_ms=([0-9.]+|nan) script_ms=([0-9.]+) vol_switches=(-?[0-9]+).*/\1 \2 \3 \4 \5 \6/' \
        <<<"$line")
    [[ -n "${nv:-}" ]] || die "$name: cannot parse '$line'"
    line=$(wait_line "$PROG_LOG" '\] \[[0-9]+\] first_request_after_listen_ms=' 10) \
        || die "$name: the program's first_request_after_listen_ms line is not in $PROG_LOG"
    read -r e_ms s_ms < <(sed -E \
        's/.*first_request_after_listen_ms=([0-9.]+) serving_after_listen_ms=([0-9.]+).*/\1 \2/' <<<"$line")
    [[ -n "${s_ms:-}" ]] || die "$name: cannot parse '$line'"
    [[ "$pid" == "$started_pid" ]] \
        || note "$name: the program printed PID $pid but edgeward logged 'Upstream started PID: $started_pid'"
    ttfb_ms=$(awk -v s="$ttfb_s" 'BEGIN { printf "%.3f", s * 1000 }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$i" "$ttfb_ms" "$a_ms" "$b_ms" "$c_ms" "$d_ms" "$nv" "$pid" "$e_ms" "$s_ms" >>"$COLD"
    log "cold start $i/$RUNS: ttfb ${ttfb_ms} ms; program: A ${a_ms} ms, B ${b_ms} ms; listen->request ${e_ms} ms"
    stop_edgeward "$name"
    mv "$PROG_LOG" "$RAW/cold-$i-prog.log"
done

# pctl Q VALUES... : linear-interpolated percentile (Q in 0..1; 1 = max)
pctl() {
    local q=$1; shift
    printf '%s\n' "$@" | sort -g | awk -v q="$q" '{ a[NR] = $1 }
        END { if (NR == 0) { print "nan"; exit }
              p = 1 + q * (NR - 1); lo = int(p); f = p - lo
              v = a[lo]; if (f > 0) v += f * (a[lo + 1] - a[lo])
              printf "%.1f\n", v }'
}
col() { awk -F'\t' -v c="$1" 'NR > 1 { print $c }' "$COLD"; }
mapfile -t TTFB < <(col 2)
mapfile -t PROG_A < <(col 3)
mapfile -t PROG_B < <(col 4)
mapfile -t PROG_D < <(col 6)
mapfile -t LISTEN_REQ < <(col 9)
mapfile -t LISTEN_SERVE < <(col 10)
mapfile -t OVER_A < <(awk -F'\t' 'NR > 1 { printf "%.3f\n", $2 - $3 }' "$COLD")
mapfile -t OVER_B < <(awk -F'\t' 'NR > 1 { printf "%.3f\n", $2 - $4 }' "$COLD")
# Tight lower bound: the post-listen wait (E - S) is edgeward's alone, so the
# overhead is at least max(overhead A, E - S).
mapfile -t OVER_LO < <(awk -F'\t' 'NR > 1 { a = $2 - $3; e = $9 - $10; printf "%.3f\n", (a > e) ? a : e }' "$COLD")
slept_runs=$(awk -F'\t' 'NR > 1 && $7 != 0 { n++ } END { print n + 0 }' "$COLD")


# run_wrk_on SITE DURATION OUTFILE
run_wrk_on() {
    kill -0 "$ORIGIN_PID" 2>/dev/null || die "the origin (pid $ORIGIN_PID) died; see $WORK/origin.log"
    run_wrk edgeward-steady "$EW_PID" "$3" -t"$WRK_THREADS" -c"$CONNS" -d"${2}s" --latency \
        -H "Host: $1.local" "http://127.0.0.1:$EDGE_PORT/"
}

# stats SITE N : SIGUSR1 the site's timed_app.py (its Nth time) and print
# "connections requests resets" from its answer
stats() {
    local site=$1 n=$2 pid file line
    if [[ $site == prog ]]; then pid=$PROG_PID; file=$PROG_LOG; else pid=$ORIGIN_PID; file="$WORK/origin.log"; fi
    kill -USR1 "$pid" 2>/dev/null || { echo "nan nan nan"; return 0; }
    line=$(wait_nth "$file" 'stats connections=' "$n" 10) || { echo "nan nan nan"; return 0; }
    sed -E 's/.*stats connections=([0-9]+) requests=([0-9]+) resets=([0-9]+).*/\1 \2 \3/' <<<"$line"
}

SITES=(prog addr)
declare -A RPS P50 P99 ERRS CONN_REQ
if (( ROUNDS > 0 )); then
    rm -f "$PROG_LOG"
    start_edgeward edgeward-steady
    for s in "${SITES[@]}"; do   # prog.local first: this starts the program
        body=$(curl -s --max-time 40 -D "$RAW/headers-$s.txt" -H "Host: $s.local" "http://127.0.0.1:$EDGE_PORT/") || true
        [[ "$body" == "$EXPECTED_BODY" ]] || die "$s.local returned body '$body', expected '$EXPECTED_BODY'"
    done
    started=$(wait_line "$PROG_LOG" 'Upstream started PID: [0-9]+' 10) \
        || die "steady state: no 'Upstream started PID' line in $PROG_LOG"
    PROG_PID=$(sed -E 's/.*Upstream started PID: ([0-9]+).*/\1/' <<<"$started")
    if (( WARMUP > 0 )); then
        for s in "${SITES[@]}"; do
            log "warm-up: $s.local, ${WARMUP}s, -c$CONNS"
            run_wrk_on "$s" "$WARMUP" "$RAW/warmup-$s.txt"
        done
    fi
    declare -A C0 Q0 X0
    for s in "${SITES[@]}"; do read -r "C0[$s]" "Q0[$s]" "X0[$s]" < <(stats "$s" 1); done
    for (( r = 1; r <= ROUNDS; r++ )); do
        for s in "${SITES[@]}"; do
            out="$RAW/steady-$s-r$r.txt"
            log "measure: round $r/$ROUNDS $s.local (${DURATION}s, -c$CONNS)"
            run_wrk_on "$s" "$DURATION" "$out"
            parsed=$(parse_wrk "$out"); read -r rps p50 p99 errs _ <<<"$parsed"
            RPS[$s]+="$rps "; P50[$s]+="$p50 "; P99[$s]+="$p99 "
            ERRS[$s]=$(( ${ERRS[$s]:-0} + errs ))
        done
    done
    # Upstream connections opened, requests and resets during the measured runs
    for s in "${SITES[@]}"; do
        read -r c1 q1 x1 < <(stats "$s" 2)
        CONN_REQ[$s]=$(awk -v c0="${C0[$s]}" -v q0="${Q0[$s]}" -v x0="${X0[$s]}" -v c1="$c1" -v q1="$q1" -v x1="$x1" \
            'BEGIN { c = c1 - c0; q = q1 - q0; printf "%d %d %d %.0f", c, q, x1 - x0, (c > 0) ? q / c : 0 }')
    done
    n_started=$(grep -c 'Upstream started PID' "$PROG_LOG" || true)
    (( n_started == 1 )) || note "steady state: the program was started $n_started times (see $PROG_LOG)"
    if grep -qE 'Upstream (exited|starting failed)|crashed' "$PROG_LOG"; then
        note "steady state: the program exited or failed during the runs (see $PROG_LOG)"
    fi
    kill -0 "$PROG_PID" 2>/dev/null || note "steady state: program PID $PROG_PID is gone before edgeward was stopped"
    stop_edgeward edgeward-steady
    cp "$PROG_LOG" "$RAW/steady-prog.log"
fi

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
[[ -n "$cpu_model" ]] || cpu_model=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }' || true)
edgeward_version=$("$EDGEWARD" --version 2>&1 | head -n1 || true)
wrk_version=$(wrk -v 2>&1 | head -n1 || true)
python_version=$("$PROG_PYTHON" --version 2>&1 | head -n1 || true)

echo "## Supervisor benchmark: cold start and steady state"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "- nproc: $(nproc)"
echo "- cpu: ${cpu_model:-unknown}"
echo "- kernel: $(uname -sr)"
echo "- load average at start: $LOADAVG_START"
echo "- edgeward: ${edgeward_version:-unknown} ($EDGEWARD)"
echo "- program: \`python3 timed_app.py\` ($PROG_PYTHON, ${python_version:-unknown}); HTTP/1.1, 200 \"hello\\n\""
echo "- wrk: ${wrk_version:-unknown}"
echo "- setup: edgeward threads=$THREADS; supervisor.port_range $PFIRST-$PLAST; all on 127.0.0.1"
echo
echo "### Cold start ($RUNS runs, a fresh edgeward each, one request)"
echo
echo "- TTFB: curl \`time_starttransfer\` of the first prog.local request."
echo "- program time A = \`listening_after_ms\`: CLOCK_BOOTTIME at listen minus /proc/self/stat"
echo "  starttime (10 ms ticks, truncated): an upper bound, 0-10 ms high."
echo "- program time B = \`own_ms\`: max(schedstat on-CPU + run-queue ns, A - 10 ms): a lower"
echo "  bound (misses sleeps, IRQ and steal time; the program slept in $slept_runs of $RUNS runs)."
echo "- so the real overhead lies between overhead A (low) and overhead B (high); and as"
echo "  E - S (listen -> request minus listen -> serve_forever) is edgeward's alone, it is at"
echo "  least max(overhead A, E - S), the tighter lower bound."
echo "- script only: first line of timed_app.py to listening (no interpreter start-up)."
echo "- listen -> request at program (E): from listen() to the proxied request reaching the program"
echo "  (same process, same clock: exact); of which the program itself needs the"
echo "  listen -> serve_forever() part (S: its /proc reads and its print)."
echo "- percentiles interpolate linearly between runs; overheads are taken per run."
echo
echo "| ms | p50 | p90 | max |"
echo "|:---|----:|----:|----:|"
row() { local label=$1; shift; printf '| %s | %s | %s | %s |\n' "$label" "$(pctl 0.5 "$@")" "$(pctl 0.9 "$@")" "$(pctl 1 "$@")"; }
row "TTFB through edgeward" "${TTFB[@]}"
row "program time A (listening_after_ms)" "${PROG_A[@]}"
row "program time B (own_ms)" "${PROG_B[@]}"
row "script only (script_ms)" "${PROG_D[@]}"
row "listen -> request at program (E)" "${LISTEN_REQ[@]}"
row "listen -> serve_forever() (S, program)" "${LISTEN_SERVE[@]}"
row "**overhead A** = TTFB − A" "${OVER_A[@]}"
row "**overhead B** = TTFB − B" "${OVER_B[@]}"
row "overhead lower bound = max(overhead A, E − S)" "${OVER_LO[@]}"
echo
ov_a=$(pctl 0.5 "${OVER_A[@]}"); ov_b=$(pctl 0.5 "${OVER_B[@]}")
echo "Goal overhead p50 <= 20 ms: overhead A $ov_a ms ($(awk -v v="$ov_a" 'BEGIN { print (v <= 20) ? "met" : "NOT met" }')), overhead B $ov_b ms ($(awk -v v="$ov_b" 'BEGIN { print (v <= 20) ? "met" : "NOT met" }'))."
echo

if (( ROUNDS > 0 )); then
    echo "### Steady state (wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds, ${WARMUP}s warm-up each)"
    echo
    echo "prog.local: supervised timed_app.py; addr.local: \`upstream.address\` to another timed_app.py started by this script."
    echo
    echo "| site | req/s (median) | p50 ms (median) | p99 ms (median) | errors (total) |"
    echo "|:-----|---------------:|----------------:|----------------:|---------------:|"
    for s in "${SITES[@]}"; do
        # shellcheck disable=SC2086  # intentional word splitting of the value lists
        printf '| %s.local | %.0f | %.3f | %.3f | %s |\n' "$s" \
            "$(median ${RPS[$s]})" "$(median ${P50[$s]})" "$(median ${P99[$s]})" "${ERRS[$s]}"
    done
    # shellcheck disable=SC2086
    a=$(median ${RPS[prog]})
    # shellcheck disable=SC2086
    b=$(median ${RPS[addr]})
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    echo
    echo "req/s per round: prog.local ${RPS[prog]% }; addr.local ${RPS[addr]% }"
    echo
    echo "Seen by each timed_app.py during the measured runs (SIGUSR1 counters):"
    echo
    echo "| site | upstream connections | requests | requests/connection | connection resets |"
    echo "|:-----|---------------------:|---------:|--------------------:|------------------:|"
    for s in "${SITES[@]}"; do
        read -r c q x per <<<"${CONN_REQ[$s]}"
        printf '| %s.local | %s | %s | %s | %s |\n' "$s" "$c" "$q" "$per" "$x"
    done
    echo
    echo "Ratio supervised/address (median req/s): **$ratio** (goal >= 0.98: $(awk -v r="$ratio" 'BEGIN { print (r + 0 >= 0.98) ? "met" : "NOT met" }'))."
    echo
fi

if [[ -s "$OTHERS" ]]; then
    note "other builds/benchmarks ran during this run (numbers may be skewed), $(wc -l <"$OTHERS") sample(s) between $(head -n1 "$OTHERS" | cut -d' ' -f1) and $(tail -n1 "$OTHERS" | cut -d' ' -f1): $(awk '{ print $3 }' "$OTHERS" | xargs -n1 basename | sort -u | tr '\n' ' ')(see $OTHERS)"
fi
if (( ${#NOTES[@]} )); then
    echo "### Notes"
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
    echo
fi

SUCCESS=1
if (( CLEAN )); then
    echo "Raw output deleted (--clean)."
else
    echo "Per-run values (\`raw/cold.tsv\`), raw wrk output, configs and logs: \`$WORK\`"
fi
