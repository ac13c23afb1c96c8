#!/usr/bin/env bash
# Soak: edgeward under mixed traffic for a long time while things break
# around it, to see that nothing leaks and no client sees an error it did
# not cause.
#
# Traffic (bench/fixtures/soak_client.py, WORKERS keep-alive clients): cache
# hits and misses on Redis storage, PURGE, WAF-blocked requests, a
# supervised program, a site whose upstream gets killed, HTTPS. Meanwhile:
# a SIGHUP every 5 s (the configuration alternates between two valid
# variants, so every reload really rebuilds), Redis killed and restarted at
# 1/3 and 2/3 of the run, the fragile site's upstream killed at 1/2 and
# restarted 10 s later.
#
# Reported: requests by kind and class (ok / upstream_down / storage_down /
# bad_status / conn_error), reloads done and failed, edgeward's RSS, open fds and threads
# when idle before, after the warm-up, at the end of the traffic, and idle
# after. Goal: bad_status = conn_error = 0, RSS growth (warm -> end) < 10 %,
# fds idle-after == idle-before. Not a timed test: run it by hand.
#
# Usage: bench/soak.sh [--edgeward PATH] [--duration SECONDS] [--workers N]
#                      [--threads N] [--warmup SECONDS] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/soak.sh [options]

  --edgeward PATH     edgeward binary (default: target/release/edgeward;
                      built by scripts/build if missing)
  --duration SECONDS  traffic after the warm-up (default 600)
  --workers N         concurrent clients (default 8)
  --threads N         edgeward worker threads (default 2)
  --warmup SECONDS    traffic before the first measurement (default 20)
  --clean             delete the work dir at the end
  -h, --help          this help
EOF
}

BENCH_TAG=soak
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGEWARD=""
DURATION=600
WORKERS=8
THREADS=2
WARMUP=20
while (( $# )); do
    case "$1" in
        --edgeward) EDGEWARD=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --clean) CLEAN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
for v in DURATION WORKERS THREADS WARMUP; do
    is_uint "${!v}" || die "--${v,,} must be a positive integer"
done

missing=()
have nginx || missing+=(nginx)
have redis-server || missing+=(redis-server)
have curl || missing+=(curl)
have openssl || missing+=(openssl)
install_missing "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
resolve_edgeward "$EDGEWARD"

make_workdir soak
bench_traps
read -r PORT TLS_PORT ADMIN_PORT ORIGIN_PORT REDIS_PORT FRAGILE_PORT <<<"$(free_ports 6)"

# ---------------------------------------------------------------- parts
mkdir -p "$WORK/origin/tmp" "$WORK/origin/static" "$WORK/logs" "$WORK/app"
for i in $(seq 0 199); do head -c 1024 /dev/zero | tr '\0' 'a' >"$WORK/origin/static/$i"; done
{
    nginx_main "$WORK/origin" 1
    echo "http {"
    nginx_http_common "$WORK/origin"
    cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $WORK/origin;
        location /static/ { add_header Cache-Control "max-age=5"; }
        location = / { return 200 "origin\n"; }
    }
}
EOF
} >"$WORK/origin/nginx.conf"
start_bg origin "$NGINX" -c "$WORK/origin/nginx.conf"

start_redis() {
    start_bg "redis-$1" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    REDIS_PID=$LAST_PID
}
start_redis 0

start_fragile() {
    start_bg "fragile-$1" env IP=127.0.0.1 PORT="$FRAGILE_PORT" python3 "$REPO_ROOT/bench/fixtures/timed_app.py"
    FRAGILE_PID=$LAST_PID
}
start_fragile 0

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.pem" -subj /CN=tls.soak \
    -addext subjectAltName=DNS:tls.soak 2>/dev/null

# write_config TTL: the configuration, with cache.soak's ttl = TTL.
write_config() {
    cat >"$WORK/edgeward.yaml.new" <<EOF
listen: ["127.0.0.1:$PORT"]
threads: $THREADS
admin: { listen: "127.0.0.1:$ADMIN_PORT" }
tls: { listen: ["127.0.0.1:$TLS_PORT"] }
cache:
  storage: redis
  redis: { url: "redis://127.0.0.1:$REDIS_PORT/0" }
accounts:
  soak:
    log_dir: $WORK/logs
    sites:
      cache:
        addresses: ["cache.soak"]
        upstream: { address: "127.0.0.1:$ORIGIN_PORT" }
        cache: { enabled: true, ttl: $1 }
      waf:
        addresses: ["waf.soak"]
        upstream: { address: "127.0.0.1:$ORIGIN_PORT" }
        waf: { profile: strong }
      app:
        addresses: ["app.soak"]
        upstream:
          command: "python3 $REPO_ROOT/bench/fixtures/timed_app.py"
          working_dir: $WORK/app
      fragile:
        addresses: ["fragile.soak"]
        upstream: { address: "127.0.0.1:$FRAGILE_PORT" }
      tls:
        addresses: ["tls.soak"]
        upstream: { address: "127.0.0.1:$ORIGIN_PORT" }
        tls: { certificate: $WORK/tls.pem, key: $WORK/tls.key }
        cache: { enabled: true }
EOF
    mv "$WORK/edgeward.yaml.new" "$WORK/edgeward.yaml"
}
write_config 10s

start_bg edgeward "$EDGEWARD" run -c "$WORK/edgeward.yaml"
EW_PID=$LAST_PID
wait_ready edgeward "$EW_PID" "http://127.0.0.1:$PORT/static/0" cache.soak 30

# sample LABEL: edgeward's RSS (KiB), open fds and threads, as "LABEL rss fds threads".
sample() {
    local rss fds thr
    rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$EW_PID/status")
    thr=$(awk '$1 == "Threads:" { print $2 }' "/proc/$EW_PID/status")
    fds=$(find "/proc/$EW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$1 $rss $fds $thr"
}
# One request to each site first, so that what opens once (log files, the
# supervised program, one pooled connection per upstream) is in the baseline.
for h in cache.soak waf.soak app.soak fragile.soak; do
    curl -s -o /dev/null --max-time 30 -H "Host: $h" "http://127.0.0.1:$PORT/" || true
done
curl -sk -o /dev/null --max-time 30 --resolve "tls.soak:$TLS_PORT:127.0.0.1" "https://tls.soak:$TLS_PORT/" || true
SAMPLES=()
SAMPLES+=("$(sample idle-before)")

# ---------------------------------------------------------------- the run
TOTAL=$(( WARMUP + DURATION ))
log "traffic for ${TOTAL}s (${WARMUP}s warm-up), $WORKERS clients, edgeward threads $THREADS"
python3 "$REPO_ROOT/bench/fixtures/soak_client.py" "$PORT" "$TLS_PORT" "$TOTAL" "$WORKERS" \
    >"$RAW/client.json" 2>"$RAW/client.err" &
CLIENT_PID=$!
bench_stop_extra() { kill "$CLIENT_PID" 2>/dev/null || true; }

START=$SECONDS
RELOADS=0
TTL=10s
REDIS_RESTARTS=0
FRAGILE_KILLED=0
warm_sampled=0
next_hup=$(( START + 5 ))
while kill -0 "$CLIENT_PID" 2>/dev/null; do
    now=$SECONDS
    t=$(( now - START ))
    if (( ! warm_sampled && t >= WARMUP )); then
        SAMPLES+=("$(sample warm)"); warm_sampled=1
    fi
    if (( now >= next_hup )); then
        if [[ $TTL == 10s ]]; then TTL=20s; else TTL=10s; fi
        write_config "$TTL"
        kill -HUP "$EW_PID"; RELOADS=$(( RELOADS + 1 ))
        next_hup=$(( next_hup + 5 ))
    fi
    if (( REDIS_RESTARTS < 2 && t >= WARMUP + DURATION * (REDIS_RESTARTS + 1) / 3 )); then
        log "t=${t}s: Redis killed and restarted"
        kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
        sleep 2
        start_redis $(( REDIS_RESTARTS + 1 )); REDIS_RESTARTS=$(( REDIS_RESTARTS + 1 ))
    fi
    if (( FRAGILE_KILLED == 0 && t >= WARMUP + DURATION / 2 )); then
        log "t=${t}s: the fragile site's upstream killed (back in 10 s)"
        kill -KILL "$FRAGILE_PID"; wait "$FRAGILE_PID" 2>/dev/null || true
        FRAGILE_KILLED=1; FRAGILE_BACK=$(( now + 10 ))
    fi
    if (( FRAGILE_KILLED == 1 && now >= FRAGILE_BACK )); then
        start_fragile 1; FRAGILE_KILLED=2
    fi
    if (( t >= TOTAL - 1 )) && [[ ${#SAMPLES[@]} -lt 3 ]]; then
        SAMPLES+=("$(sample end-of-traffic)")
    fi
    sleep 0.5
done
wait "$CLIENT_PID" || die "the client failed: $(tail -5 "$RAW/client.err")"
[[ ${#SAMPLES[@]} -ge 3 ]] || SAMPLES+=("$(sample end-of-traffic)")
kill -0 "$EW_PID" 2>/dev/null || die "edgeward died during the soak; see $WORK/edgeward.log"

# Idle after: client connections close as the clients went, pooled upstream
# connections after their idle timeout (60 s); poll until the fd count is
# back to where it started (or 75 s).
base_fds=$(awk '{ print $3 }' <<<"${SAMPLES[0]}")
deadline=$(( SECONDS + 75 ))
while :; do
    s=$(sample idle-after)
    (( $(awk '{ print $3 }' <<<"$s") <= base_fds || SECONDS >= deadline )) && break
    sleep 0.2
done
SAMPLES+=("$s")

reloaded=$(grep -c "configuration reloaded" "$WORK/edgeward.log" || true)
reload_failed=$(grep -c "configuration reload failed" "$WORK/edgeward.log" || true)
errors=$(grep -c " ERROR " "$WORK/edgeward.log" || true)
panics=$(grep -c "panicked" "$WORK/edgeward.log" || true)

# ---------------------------------------------------------------- report
python3 - "$RAW/client.json" "$CMDLINE" "$RELOADS" "$reloaded" "$reload_failed" \
    "$errors" "$panics" "${SAMPLES[@]}" <<'EOF'
import json, os, sys
data = json.load(open(sys.argv[1]))
cmd, sent, ok, failed, errors, panics = sys.argv[2:8]
samples = [s.split() for s in sys.argv[8:]]
print("## Soak\n")
print(f"`{cmd}` on {os.cpu_count()} cores; load average at the end {open('/proc/loadavg').read().split()[:3]}\n")
print(f"Requests: {data['requests']}; by class: {data['by_class']}\n")
classes = ["ok", "upstream_down", "storage_down", "bad_status", "conn_error"]
print("| kind | " + " | ".join(classes) + " |")
print("|---|" + "---|" * len(classes))
for kind, c in data["by_kind"].items():
    print(f"| {kind} | " + " | ".join(str(c.get(k, 0)) for k in classes) + " |")
print(f"\nReloads: {sent} SIGHUPs, {ok} done, {failed} failed. edgeward log: {errors} ERROR lines, {panics} panics.\n")
print("| when | RSS (MiB) | open fds | threads |")
print("|---|---|---|---|")
for label, rss, fds, thr in samples:
    print(f"| {label} | {int(rss) / 1024:.1f} | {fds} | {thr} |")
warm = next(int(s[1]) for s in samples if s[0] == "warm")
end = next(int(s[1]) for s in samples if s[0] == "end-of-traffic")
growth = (end - warm) / warm * 100
fds_ok = int(samples[-1][2]) <= int(samples[0][2])
bad = data["by_class"].get("bad_status", 0) + data["by_class"].get("conn_error", 0)
print(f"\nRSS growth warm -> end: {growth:+.1f} % (goal < 10 %); fds back: {'yes' if fds_ok else 'no'}; "
      f"errors the client did not cause: {bad} (goal 0)")
if data.get("examples"):
    print("\nExamples: " + json.dumps(data["examples"]))
EOF
SUCCESS=1
