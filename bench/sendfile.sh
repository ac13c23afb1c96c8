#!/usr/bin/env bash
# Does zero-copy sending make large cache hits faster here? The question
# behind bench/cache.sh's 100 KiB row: nginx sends a cached file with
# sendfile, a Pingora server copies the body in one writev.
#
# One small C server (bench/fixtures/send_server.c: one thread, epoll, every
# request answered with the same SIZE KiB body) runs three times, differing
# only in how the answer reaches the socket:
#   writev    header and body in one writev (a Pingora cache hit);
#   sendfile  header with send(MSG_MORE), body by sendfile from a memfd;
#   nginx     header with writev, body by sendfile (nginx: sendfile on,
#             tcp_nopush off).
# Beside them, nginx itself serving the body as a static file, tuned as
# bench/cache.sh tunes its proxy_cache (nginx-static).
# Loaded as bench/cache.sh loads its servers (wrk -t2 -c50, unpinned, all on
# 127.0.0.1), alternating over rounds. Reports req/s, the server's CPU per
# request (utime + stime of its session, server_ticks) and each mode against writev,
# round by round. Progress goes to stderr, the markdown report to stdout.
#
# Usage: bench/sendfile.sh [--size KIB] [--duration S] [--rounds R]
#                          [--connections C] [--wrk-threads N] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/sendfile.sh [options]

  --size KIB          answer body size in KiB (default 100)
  --duration S        each measured wrk run, seconds (default 5)
  --rounds R          rounds, modes alternating (default 6)
  --connections C     wrk connections (default 50)
  --wrk-threads N     wrk threads (default 2)
  --clean             delete the work dir at the end
  -h, --help          this help
EOF
}

BENCH_TAG=sendfile-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SIZE=100
DURATION=5
ROUNDS=6
CONNS=50
WRK_THREADS=2
CLEAN=0
while (( $# )); do
    case "$1" in
        --size)        SIZE=${2:?--size needs a value}; shift 2 ;;
        --duration)    DURATION=${2:?--duration needs a value}; shift 2 ;;
        --rounds)      ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --connections) CONNS=${2:?--connections needs a value}; shift 2 ;;
        --wrk-threads) WRK_THREADS=${2:?--wrk-threads needs a value}; shift 2 ;;
        --clean)       CLEAN=1; shift ;;
        -h|--help)     usage; exit 0 ;;
        *)             usage >&2; die "unknown option $1" ;;
    esac
done
for v in SIZE DURATION ROUNDS CONNS WRK_THREADS; do
    is_uint "${!v}" || die "--$(tr '[:upper:]_' '[:lower:]-' <<<"$v") must be a positive integer"
done

need_install=()
have wrk  || need_install+=(wrk)
have curl || need_install+=(curl)
have cc   || need_install+=(gcc libc6-dev)
have nginx || need_install+=(nginx-light)
install_missing "${need_install[@]}"

NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

make_workdir sendfile-bench
bench_traps

cc -O2 -Wall -Wextra -Werror -o "$WORK/send_server" "$REPO_ROOT/bench/fixtures/send_server.c"

MODES=(writev sendfile nginx nginx-static)
declare -A PORT PID
read -r p1 p2 p3 p4 < <(free_ports 4)
[[ -n "${p4:-}" ]] || die "could not pick free ports"
PORT=([writev]=$p1 [sendfile]=$p2 [nginx]=$p3 [nginx-static]=$p4)
for m in writev sendfile nginx; do
    start_bg "$m" "$WORK/send_server" "${PORT[$m]}" "$m" "$SIZE"
    PID[$m]=$LAST_PID
done
# nginx itself serving the body as a static file, tuned as bench/cache.sh
# tunes its proxy_cache (sendfile on, tcp_nopush off, open_file_cache): the
# anchor's own send path, without its cache logic.
NX_DIR="$WORK/nginx-static"
mkdir -p "$NX_DIR/tmp" "$NX_DIR/www"
head -c $(( SIZE * 1024 )) /dev/zero | tr '\0' 'x' >"$NX_DIR/www/body.txt"
chmod -R a+rX "$NX_DIR"
{
    nginx_main "$NX_DIR" 1
    echo "http {"
    nginx_http_common "$NX_DIR"
    nginx_send_files
    cat <<EOF
    server {
        listen 127.0.0.1:${PORT[nginx-static]};
        location / { root $NX_DIR/www; try_files /body.txt =404; }
    }
}
EOF
} >"$NX_DIR/nginx.conf"
start_bg nginx-static "$NGINX" -p "$NX_DIR" -e "$NX_DIR/error.log" -c "$NX_DIR/nginx.conf"
PID[nginx-static]=$LAST_PID
for m in "${MODES[@]}"; do
    wait_ready "$m" "${PID[$m]}" "http://127.0.0.1:${PORT[$m]}/" bench.local 10
    got=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:${PORT[$m]}/")
    [[ "$got" == $(( SIZE * 1024 )) ]] || die "$m answered $got bytes, not $(( SIZE * 1024 ))"
done

HZ=$(getconf CLK_TCK)

declare -A RPS CPU
for m in "${MODES[@]}"; do   # warm-up
    run_wrk "$m" "${PID[$m]}" "$RAW/warmup-$m.txt" -t"$WRK_THREADS" -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$m]}/"
done
for (( r = 1; r <= ROUNDS; r++ )); do
    for m in "${MODES[@]}"; do
        log "round $r/$ROUNDS: $m (${DURATION}s)"
        t0=$(server_ticks "${PID[$m]}")
        run_wrk "$m" "${PID[$m]}" "$RAW/$m-r$r.txt" -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$m]}/"
        t1=$(server_ticks "${PID[$m]}")
        read -r rps _ _ errs reqs <<<"$(parse_wrk "$RAW/$m-r$r.txt")"
        (( errs == 0 )) || die "$m: $errs errors in round $r"
        RPS[$m]+="$rps "
        CPU[$m]+="$(awk -v t=$(( t1 - t0 )) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }') "
    done
done

echo "## Zero-copy or one copy: sending a ${SIZE} KiB answer"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); nproc $(nproc); cpu: $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown); kernel: $(uname -sr)"
echo "- servers: bench/fixtures/send_server.c (one thread, epoll), the body in memory (writev) or in a memfd (sendfile); nginx-static: $("$NGINX" -v 2>&1 | head -n1), 1 worker, the body as a static file, sendfile on, tcp_nopush off, open_file_cache; wrk -t$WRK_THREADS -c$CONNS, unpinned, ${DURATION}s per run, $ROUNDS alternating rounds, all on 127.0.0.1"
echo
echo "| mode | req/s (median) | server CPU µs/request (median) | every round req/s |"
echo "|:--|--:|--:|:--|"
for m in "${MODES[@]}"; do
    # shellcheck disable=SC2086  # intentional word splitting of the value lists
    printf '| %s | %.0f | %.1f | %s |\n' "$m" "$(median ${RPS[$m]})" "$(median ${CPU[$m]})" "${RPS[$m]% }"
done
echo
echo "| against writev | median | min | max | every round |"
echo "|:--|--:|--:|--:|:--|"
for m in sendfile nginx nginx-static; do
    printf '| %s/writev | %s |\n' "$m" "$(round_ratios "${RPS[$m]}" "${RPS[writev]}")"
done
echo
SUCCESS=1
if (( CLEAN )); then echo "Raw wrk output deleted (--clean)."; else echo "Raw wrk output: \`$WORK\`"; fi
