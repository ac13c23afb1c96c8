#!/usr/bin/env bash
# WAF cost: edgeward vs nginx + ModSecurity (Debian 12: nginx 1.22, connector
# 1.0.3, libmodsecurity 3.0.9), the same CRS 3.3.4 files per profile, the
# same backend (nginx answering 200), alternating runs in one script.
#
#   bench/waf.sh [--duration S] [--rounds N] [--conns "1 16"] [--profiles "basic strong full"]
#
# For each profile (and "off" = no WAF), each request type (a benign GET with
# browser headers, a small benign form POST: the reference kit's get.lua /
# post.lua) and each connection count, runs wrk -t1 against edgeward
# (--workers worker threads, default 1, plus the WAF engine threads, one per
# CPU) and nginx (ModSecurity running inside its worker processes),
# alternating, ROUNDS times. Equal CPU by default: nginx gets as many worker
# processes as the cores edgeward's threads can use (its workers plus its
# engine threads, at most nproc); --nginx-workers N overrides it.
# Prints median req/s, p50 and p99 per cell and the edgeward/nginx req/s
# ratio. Needs nginx, libnginx-mod-http-modsecurity, modsecurity-crs, wrk.
set -euo pipefail
BENCH_TAG=waf-bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ORIG_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
REPO_ROOT=$ROOT
EDGEWARD=""
DURATION=8
ROUNDS=2
CONNS=(1 16)
PROFILES=(basic strong full)
WORKERS=1
NGINX_WORKERS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --edgeward) EDGEWARD=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --conns) read -r -a CONNS <<<"$2"; shift 2 ;;
        --profiles) read -r -a PROFILES <<<"$2"; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --nginx-workers) NGINX_WORKERS=$2; shift 2 ;;
        *) echo "usage: $0 [--edgeward PATH] [--duration S] [--rounds N] [--conns \"1 16\"] [--profiles \"basic strong full\"] [--workers N] [--nginx-workers N]" >&2; exit 2 ;;
    esac
done
for tool in nginx wrk curl; do have "$tool" || die "$tool is not installed"; done
# The cores edgeward can use: its worker threads plus its WAF engine threads
# (one per CPU, src/waf/mod.rs), at most the machine's.
CPUS=$(nproc)
EW_CORES=$(( WORKERS + CPUS )); (( EW_CORES <= CPUS )) || EW_CORES=$CPUS
[[ -n "$NGINX_WORKERS" ]] || NGINX_WORKERS=$EW_CORES
[[ -f /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ]] \
    || die "libnginx-mod-http-modsecurity is not installed"
resolve_edgeward "$EDGEWARD"
EW=$EDGEWARD

make_workdir waf-bench
CLEAN=1   # the work dir goes after a successful run, stays after a failure
# The two nginx run as daemons: stopped by their pid files.
bench_stop_extra() {
    local d
    for d in nginx backend; do
        if [[ -f "$WORK/$d/nginx.pid" ]]; then kill "$(cat "$WORK/$d/nginx.pid")" 2>/dev/null || true; fi
    done
}
bench_traps

read -r -a PORTS < <(free_ports $(( 4 + ${#PROFILES[@]} )))
BACKEND=${PORTS[0]} EW_PORT=${PORTS[1]} ADMIN_PORT=${PORTS[2]}
declare -A NGX_PORT
i=3
for p in off "${PROFILES[@]}"; do NGX_PORT[$p]=${PORTS[$i]}; i=$(( i + 1 )); done

# ---- the ModSecurity rule files nginx loads: the same text edgeward compiles
# for each profile (base, setup, PL1/threshold 5, the profile's CRS files in
# numeric order, block mode).
mkdir -p "$WORK"/{nginx/logs,nginx/tmp,backend/logs,backend/tmp,modsec}
for p in "${PROFILES[@]}"; do
    f=$WORK/modsec/$p.conf
    {
        cat "$ROOT/profiles/modsecurity.conf"
        echo "SecRuleEngine On"
        cat "$ROOT/profiles/crs-setup.conf"
        python3 - "$ROOT/profiles/$p.yaml" <<'PY'
import fnmatch, os, sys, yaml
prof = yaml.safe_load(open(sys.argv[1]))
settings = prof.get("settings") or {}
if settings:
    print('SecAction "id:9990000,phase:1,pass,nolog,t:none' +
          ''.join(",setvar:'tx.%s=%s'" % (k, v) for k, v in settings.items()) + '"')
rules = "/usr/share/modsecurity-crs/rules"
files = sorted(os.listdir(rules))
chosen = sorted({f for pat in prof["rules"] for f in files if fnmatch.fnmatchcase(f, pat)})
for f in chosen:
    print('Include "%s/%s"' % (rules, f))
PY
    } > "$f"
done

cat > "$WORK/backend/nginx.conf" <<EOC
worker_processes 1;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/backend/tmp/body; proxy_temp_path $WORK/backend/tmp/proxy;
  fastcgi_temp_path $WORK/backend/tmp/fcgi; uwsgi_temp_path $WORK/backend/tmp/uwsgi; scgi_temp_path $WORK/backend/tmp/scgi;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$BACKEND backlog=4096;
           location / { default_type text/plain; return 200 "ok \$request_method \$request_uri\n"; } }
}
EOC
{
    cat <<EOC
load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;
worker_processes $NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body; proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fcgi; uwsgi_temp_path $WORK/nginx/tmp/uwsgi; scgi_temp_path $WORK/nginx/tmp/scgi;
  keepalive_requests 100000;
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host \$host;
  server { listen 127.0.0.1:${NGX_PORT[off]} backlog=4096; location / { proxy_pass http://backend; } }
EOC
    for p in "${PROFILES[@]}"; do
        echo "  server { listen 127.0.0.1:${NGX_PORT[$p]} backlog=4096; modsecurity on; modsecurity_rules_file $WORK/modsec/$p.conf; location / { proxy_pass http://backend; } }"
    done
    echo "}"
} > "$WORK/nginx/nginx.conf"

{
    cat <<EOC
listen: ["127.0.0.1:$EW_PORT"]
admin: { listen: "127.0.0.1:$ADMIN_PORT" }
threads: $WORKERS
accounts:
  bench:
    log_dir: $WORK/ew-logs
    sites:
      off:
        addresses: [off.bench]
        upstream: { address: "127.0.0.1:$BACKEND" }
        access_log: { enabled: false }
EOC
    for p in "${PROFILES[@]}"; do
        cat <<EOC
      $p:
        addresses: [$p.bench]
        upstream: { address: "127.0.0.1:$BACKEND" }
        access_log: { enabled: false }
        waf: { profile: $p }
EOC
    done
} > "$WORK/edgeward.yaml"

nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -e "$WORK/backend/logs/error.log"
nginx -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log"
"$EW" check -c "$WORK/edgeward.yaml" >/dev/null
start_bg edgeward env RUST_LOG=warn "$EW" run -c "$WORK/edgeward.yaml"
EW_PID=$LAST_PID
for p in off "${PROFILES[@]}"; do
    wait_ready edgeward "$EW_PID" "http://127.0.0.1:$EW_PORT/" "$p.bench" 20
done

# Requests: the reference kit's benign GET and form POST, Host from the env.
cat > "$WORK/get.lua" <<'LUA'
wrk.method = "GET"
wrk.path = "/products/42?ref=homepage&utm_source=newsletter"
wrk.headers["Host"] = os.getenv("BENCH_HOST")
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3"
wrk.headers["Cookie"] = "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark"
LUA
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/contact"
wrk.body = "name=Jean+Dupont&email=jean.dupont%40example.fr&subject=Question+about+my+order&message=Hello%2C+I+would+like+to+know+when+my+order+12345+will+ship.+Thanks%21"
wrk.headers["Host"] = os.getenv("BENCH_HOST")
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark"
LUA

# Both must pass the benign requests (a WAF that blocks them is not measured).
for p in off "${PROFILES[@]}"; do
    for url in "http://127.0.0.1:$EW_PORT" "http://127.0.0.1:${NGX_PORT[$p]}"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $p.bench" \
            -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' \
            -H 'Accept: text/html' --data 'name=Jean+Dupont&message=Hello' "$url/contact")
        [[ "$code" == 200 ]] || die "$url ($p) answered $code to a benign POST"
    done
done

run() { # proxy profile req conns: one wrk run, its output in $WORK/wrk.txt
    local proxy=$1 p=$2 req=$3 c=$4 url pid
    if [[ $proxy == edgeward ]]; then
        url="http://127.0.0.1:$EW_PORT"; pid=$EW_PID
    else
        url="http://127.0.0.1:${NGX_PORT[$p]}"; pid=$(cat "$WORK/nginx/nginx.pid")
    fi
    BENCH_HOST="$p.bench" run_wrk "$proxy" "$pid" "$WORK/wrk.txt" -t1 -c"$c" -d"${DURATION}s" --latency -s "$WORK/$req.lua" "$url"
}

declare -A RPS P50 P99 ERR
log "warm-up"
for p in off "${PROFILES[@]}"; do
    BENCH_HOST="$p.bench" run_wrk edgeward "$EW_PID" "$WORK/warmup.txt" -t1 -c16 -d2s -s "$WORK/get.lua" "http://127.0.0.1:$EW_PORT"
    BENCH_HOST="$p.bench" run_wrk nginx "$(cat "$WORK/nginx/nginx.pid")" "$WORK/warmup.txt" -t1 -c16 -d2s -s "$WORK/get.lua" "http://127.0.0.1:${NGX_PORT[$p]}"
done
for (( r = 1; r <= ROUNDS; r++ )); do
    for req in get post; do
        for c in "${CONNS[@]}"; do
            for p in off "${PROFILES[@]}"; do
                for proxy in edgeward nginx; do
                    log "round $r: $req c$c $p $proxy"
                    run "$proxy" "$p" "$req" "$c"
                    parsed=$(parse_wrk "$WORK/wrk.txt"); read -r rps p50 p99 e _ <<<"$parsed"
                    k="$req,$c,$p,$proxy"
                    RPS[$k]+="$rps "; P50[$k]+="$p50 "; P99[$k]+="$p99 "
                    ERR[$k]=$(( ${ERR[$k]:-0} + e ))
                done
            done
        done
    done
done

echo
echo "WAF benchmark: wrk -t1, ${DURATION}s x $ROUNDS alternating rounds (medians); $(nproc) CPU(s)"
echo "$("$EW" --version 2>/dev/null | head -1): $WORKERS worker thread(s) + $(nproc) WAF engine thread(s); $(nginx -v 2>&1 | sed 's/nginx version: //'): $NGINX_WORKERS worker process(es) running ModSecurity (edgeward can use $EW_CORES core(s)); libmodsecurity 3.0.9; CRS 3.3.4 PL1"
echo
printf '| request | conns | profile | edgeward req/s | p50 ms | p99 ms | nginx+modsec req/s | p50 ms | p99 ms | ratio | errors e/n |\n'
printf '|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n'
for req in get post; do
    for c in "${CONNS[@]}"; do
        for p in off "${PROFILES[@]}"; do
            e="$req,$c,$p,edgeward"; n="$req,$c,$p,nginx"
            # shellcheck disable=SC2086  # intentional word splitting of the value lists
            er=$(median ${RPS[$e]})
            # shellcheck disable=SC2086
            nr=$(median ${RPS[$n]})
            # shellcheck disable=SC2086
            printf '| %s | %s | %s | %.0f | %.3f | %.3f | %.0f | %.3f | %.3f | %.2f | %s/%s |\n' \
                "$req" "$c" "$p" "$er" "$(median ${P50[$e]})" "$(median ${P99[$e]})" \
                "$nr" "$(median ${P50[$n]})" "$(median ${P99[$n]})" \
                "$(awk -v a="$er" -v b="$nr" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" \
                "${ERR[$e]}" "${ERR[$n]}"
        done
    done
done

# The cost of running engine calls on the blocking pool: wall time of each
# WAF phase minus its time in the engine (edgeward's own histograms).
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
    /^edgeward_waf_handoff_seconds_sum/ { hs = $2 } /^edgeward_waf_handoff_seconds_count/ { hc = $2 }
    /^edgeward_waf_engine_seconds_sum/ { es += $2 } /^edgeward_waf_engine_seconds_count/ { ec += $2 }
    END { if (hc > 0) printf "\nedgeward WAF phases: %d; mean engine time %.1f us; mean handoff to the engine threads and back %.1f us per phase (queueing included)\n", hc, es / ec * 1e6, hs / hc * 1e6 }'
SUCCESS=1
