#!/usr/bin/env bash
# The container image as an operator runs it, on a machine with a Docker
# engine (ours: Debian's docker.io started with --bridge=none, so every
# container uses --network host and every connection stays on loopback).
#
#   docker/build.sh --redis && tests/container.sh
#
# Needs the images $IMAGE (default edgeward:dev) and, for the Compose part,
# $REDIS_IMAGE (default redis:7-bookworm); docker/build.sh --redis makes both.
# Every port is a free loopback port picked at start; every file lives in a
# temporary directory; every container (and the Compose project) is removed
# on exit. Prints one line per check and `N passed, N failed, N skipped`;
# exits 1 when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-edgeward:dev}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7-bookworm}
COMPOSE_FILE=$PWD/docker/compose.yml
GRACE=5   # grace_period (seconds) in the configuration below

PASS=0 FAIL=0 SKIP=0
summary() { echo "$PASS passed, $FAIL failed, $SKIP skipped"; }
ok()   { PASS=$((PASS + 1)); printf 'ok    %s\n' "$1"; }
bad()  { FAIL=$((FAIL + 1)); printf 'FAIL  %s\n' "$1"; shift; local l; for l in "$@"; do printf '        %s\n' "$l"; done; }
skip() { SKIP=$((SKIP + 1)); printf 'skip  %s\n' "$1"; }
# check NAME COND_EXIT_STATUS DETAIL...: count one check from a test's result.
check() { local name=$1 rc=$2; shift 2; if [ "$rc" = 0 ]; then ok "$name"; else bad "$name" "$@"; fi; }
# abort NAME DETAIL...: a failure after which nothing else can be checked.
abort() { bad "$@"; summary; exit 1; }

# poll SECONDS COMMAND...: run COMMAND until it succeeds; fail after SECONDS.
poll() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

TMP=$(mktemp -d /tmp/edgeward-container.XXXXXX)
RUN_ID=ewtest$$
MAIN=$RUN_ID-main
ORIGIN_PID=""
COMPOSE_UP=0
compose() { docker-compose -p "$RUN_ID" -f "$COMPOSE_FILE" "$@"; }
cleanup() {
    local rc=$?
    if [ "$COMPOSE_UP" = 1 ]; then compose down -v --remove-orphans >/dev/null 2>&1 || true; fi
    docker rm -f "$MAIN" >/dev/null 2>&1 || true
    if [ -n "$ORIGIN_PID" ]; then kill "$ORIGIN_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT

# free_ports N: N distinct free TCP ports on 127.0.0.1 (held open together
# while picked, so no two are the same).
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# http PORT HOST PATH [CURL ARGS...]: one request to 127.0.0.1:PORT with that
# Host; sets STATUS (000 when there was no answer), BODY and HEADERS (file).
HEADERS=$TMP/headers
http() {
    local port=$1 host=$2 path=$3; shift 3
    STATUS=$(curl -sS -o "$TMP/body" -D "$HEADERS" -w '%{http_code}' --max-time 30 \
        -H "Host: $host" "$@" "http://127.0.0.1:$port$path" 2>"$TMP/curl.err") || STATUS=000
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
}
# header NAME: the value of NAME in the last answer ('' when absent).
header() {
    local v
    v=$(grep -i -m1 "^$1:" "$HEADERS" 2>/dev/null || true)
    v=${v#*:}; v=${v//$'\r'/}
    printf '%s' "${v# }"
}
# http_is PORT HOST PATH STATUS: for poll.
http_is() { http "$1" "$2" "$3"; [ "$STATUS" = "$4" ]; }
state() { docker inspect -f "$2" "$1" 2>/dev/null || true; }
file_has() { [ -f "$1" ] && grep -qF -- "$2" "$1"; }

for img in "$IMAGE" "$REDIS_IMAGE"; do
    docker image inspect "$img" >/dev/null 2>&1 \
        || abort "image $img is here" "build it with docker/build.sh --redis (an engine must run: scripts/deps.sh ci)"
done
echo "container.sh: image $IMAGE ($(( $(state "$IMAGE" '{{.Size}}') / 1000000 )) MB)"

# ------------------------------------------------------------------ fixtures
read -r HTTP HTTPS ADMIN < <(free_ports 3)
TOKEN=$RANDOM$RANDOM
mkdir -p "$TMP/conf/app-www" "$TMP/conf/tls" "$TMP/logs" "$TMP/origin"
# The log volume: a host directory the image's user (10001) may write.
chown 10001:10001 "$TMP/logs"
printf '<p>supervised program says %s</p>\n' "$TOKEN" >"$TMP/conf/app-www/index.html"
# A self-signed certificate for the proxied site's HTTPS (the key readable by
# the image's user).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=proxied.test -addext subjectAltName=DNS:proxied.test \
    -keyout "$TMP/conf/tls/proxied.key" -out "$TMP/conf/tls/proxied.pem" 2>"$TMP/openssl.err" \
    || abort "openssl makes the test certificate" "$(cat "$TMP/openssl.err")"
chmod 0644 "$TMP/conf/tls/proxied.key"

# The origin of the proxied site, on the host: / answers with the token,
# /proto with the X-Forwarded-Proto it got, /slow after 2.5 s (and says when
# it started, for the stop test).
python3 - "$TMP/origin" "$TOKEN" >"$TMP/origin/log" 2>&1 <<'EOF' &
import http.server, os, sys, time
d, token = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/slow":
            open(os.path.join(d, "slow-started"), "w").close()
            time.sleep(2.5)
            body = b"slow done\n"
        elif self.path == "/proto":
            body = ("proto=%s\n" % self.headers.get("X-Forwarded-Proto")).encode()
        else:
            body = ("origin says %s\n" % token).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(os.path.join(d, "port.tmp"), "w") as f: f.write(str(s.server_port))
os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
s.serve_forever()
EOF
ORIGIN_PID=$!
poll 10 test -s "$TMP/origin/port" || abort "the test's origin starts on the host" "$(cat "$TMP/origin/log")"
ORIGIN=$(cat "$TMP/origin/port")

CONF=$TMP/conf/edgeward.yaml
cat >"$CONF" <<EOF
listen: ["127.0.0.1:$HTTP"]
grace_period: ${GRACE}s
admin:
  listen: "127.0.0.1:$ADMIN"
tls:
  listen: ["127.0.0.1:$HTTPS"]
waf:
  event_log: /var/log/edgeward/waf-events.jsonl
accounts:
  t:
    log_dir: /var/log/edgeward/t
    sites:
      proxied:
        addresses: ["proxied.test"]
        upstream:
          address: "127.0.0.1:$ORIGIN"
        tls:
          certificate: /etc/edgeward/tls/proxied.pem
          key: /etc/edgeward/tls/proxied.key
        waf:
          profile: strong
      app:
        addresses: ["app.test"]
        upstream:
          command: "perl /usr/share/edgeward/demo/server.pl"
          working_dir: /etc/edgeward/app-www
          start_timeout: 20s
EOF

# ------------------------------------------------------------------- image
echo "== image"
cfg=$(state "$IMAGE" '{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Entrypoint}}|{{json .Config.Healthcheck.Test}}')
case "$cfg" in
    '10001:10001|SIGTERM|["/usr/bin/tini","--","/usr/local/bin/edgeward"]|'*'http://127.0.0.1:9180/health'*) rc=0 ;;
    *) rc=1 ;;
esac
check "image: USER 10001:10001, STOPSIGNAL SIGTERM, tini entrypoint, HEALTHCHECK on /health" "$rc" "docker inspect: $cfg"

out=$(docker run --rm --network host "$IMAGE" check -c /etc/edgeward/edgeward.yaml 2>&1) && rc=0 || rc=$?
check "edgeward check: the image's own configuration is valid (exit 0)" "$rc" "exit $rc: $out"

out=$(docker run --rm --network host -v "$TMP/conf:/etc/edgeward:ro" "$IMAGE" check -c /etc/edgeward/edgeward.yaml 2>&1) && rc=0 || rc=$?
check "edgeward check: the test configuration is valid (exit 0)" "$rc" "exit $rc: $out"

sed 's/working_dir:/workdir:/' "$CONF" >"$TMP/conf/broken.yaml"
out=$(docker run --rm --network host -v "$TMP/conf:/etc/edgeward:ro" "$IMAGE" check -c /etc/edgeward/broken.yaml 2>&1) && rc=0 || rc=$?
line=$(grep -n 'workdir:' "$TMP/conf/broken.yaml" | cut -d: -f1)
if [ "$rc" = 1 ] && grep -q "/etc/edgeward/broken.yaml:$line:[0-9]*: .*unknown field \`workdir\`" <<<"$out"; then rc=0; else rc=1; fi
check "edgeward check: a broken file exits 1 with file:line:col and the error" "$rc" "$out"

# --------------------------------------------------------------------- run
echo "== run (docker run --network host, config and log volumes)"
out=$(docker run -d --name "$MAIN" --network host \
    -v "$TMP/conf:/etc/edgeward:ro" -v "$TMP/logs:/var/log/edgeward" \
    --health-cmd "curl -fsS -o /dev/null http://127.0.0.1:$ADMIN/health" \
    --health-interval 1s --health-timeout 3s --health-start-period 1s --health-retries 3 \
    "$IMAGE" 2>&1) || abort "docker run" "$out"
STARTED_AT=$(state "$MAIN" '{{.State.StartedAt}}')

if poll 30 http_is "$ADMIN" localhost /health 200 && grep -q '"status":"ok"' <<<"$BODY" && grep -q '"sites":2' <<<"$BODY"; then rc=0; else rc=1; fi
check "/health on the admin listener: 200 {\"status\":\"ok\",...,\"sites\":2}" "$rc" "status $STATUS: $BODY" "$(docker logs "$MAIN" 2>&1 | tail -n 20)"

poll 20 sh -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' '$MAIN')\" = healthy ]" && rc=0 || rc=1
check "docker reports the container healthy (curl in the image reaches /health)" "$rc" "$(state "$MAIN" '{{json .State.Health}}')"

http "$HTTP" proxied.test /
rid=$(header X-Request-Id)
if [ "$STATUS" = 200 ] && [ "$BODY" = "origin says $TOKEN" ] && [ -n "$rid" ]; then rc=0; else rc=1; fi
check "proxied site: 200 with the origin's body and an X-Request-Id" "$rc" "status $STATUS, X-Request-Id '$rid': $BODY"

# HTTPS: the site's certificate (verified against it), HTTP/2 by ALPN, and
# the origin told the request came over TLS.
out=$(curl -sS --max-time 10 --cacert "$TMP/conf/tls/proxied.pem" --http2 \
    --resolve "proxied.test:$HTTPS:127.0.0.1" -w ' %{http_code} HTTP/%{http_version}' \
    "https://proxied.test:$HTTPS/proto" 2>&1) || true
[ "$out" = "proto=https
 200 HTTP/2" ] && rc=0 || rc=1
check "HTTPS (OpenSSL in the image): the site's certificate, HTTP/2 by ALPN, X-Forwarded-Proto: https upstream" "$rc" "$out"

http "$HTTP" nobody.test /
[ "$STATUS" = 404 ] && rc=0 || rc=1
check "unknown host: edgeward's 404" "$rc" "status $STATUS: $BODY"

http "$HTTP" proxied.test '/?id=1%20OR%201=1'
waf_rid=$(header X-Request-Id)
if [ "$STATUS" = 403 ] && grep -qF "$waf_rid" <<<"$BODY"; then rc=0; else rc=1; fi
check "WAF (strong profile, the CRS inside the image): SQL injection gets 403 with the request id" "$rc" "status $STATUS, id '$waf_rid': $BODY"
if [ -n "$waf_rid" ] && poll 10 file_has "$TMP/logs/waf-events.jsonl" "\"request_id\":\"$waf_rid\"" \
    && grep -F "\"request_id\":\"$waf_rid\"" "$TMP/logs/waf-events.jsonl" | grep '"action":"blocked".*942100' >/dev/null; then rc=0; else rc=1; fi
check "WAF event log in the log volume: the block, rule 942100" "$rc" "$(tail -n 2 "$TMP/logs/waf-events.jsonl" 2>&1)"

http "$HTTP" app.test /
if [ "$STATUS" = 200 ] && grep -qF "supervised program says $TOKEN" <<<"$BODY"; then rc=0; else rc=1; fi
check "supervised program (perl, the image's runtime): started on the first request, 200 with its page" "$rc" "status $STATUS: $BODY" "$(tail -n 5 "$TMP/logs/t/sites/app.log" 2>&1)"
if poll 10 file_has "$TMP/logs/t/sites/app.log" "Upstream started PID" && grep -q 'server.pl: serving /etc/edgeward/app-www' "$TMP/logs/t/sites/app.log"; then rc=0; else rc=1; fi
check "supervised program: its start and its own output in the sites log (log volume)" "$rc" "$(tail -n 5 "$TMP/logs/t/sites/app.log" 2>&1)"

uid=$(docker exec "$MAIN" id -u 2>&1) || true
procs=$(docker top "$MAIN" -eo pid,uid,args 2>&1) || true
if [ "$uid" = 10001 ] && grep -q 'tini' <<<"$procs" && grep -q 'edgeward run' <<<"$procs" && grep -q 'server.pl' <<<"$procs" \
    && [ "$(awk 'NR > 1 && $2 != 10001' <<<"$procs" | wc -l)" = 0 ]; then rc=0; else rc=1; fi
check "runs as uid 10001: id -u in the container, and every process (tini, edgeward, the program)" "$rc" "id -u: $uid" "$procs"

# ACME's default storage (tls.storage kind dir): present, the edgeward
# user's alone, writable by it.
store=$(docker exec "$MAIN" sh -c 'stat -c "%u:%g %a" /var/lib/edgeward/tls && touch /var/lib/edgeward/tls/.w && rm /var/lib/edgeward/tls/.w && echo writable' 2>&1) || true
if [ "$store" = "10001:10001 700
writable" ]; then rc=0; else rc=1; fi
check "ACME's default storage /var/lib/edgeward/tls: owned by 10001, mode 700, writable" "$rc" "$store"

http "$HTTP" proxied.test "/log-$TOKEN"
if [ "$STATUS" = 200 ] && poll 10 file_has "$TMP/logs/t/http/proxied.log" "\"GET /log-$TOKEN HTTP/1.1\" 200 "; then rc=0; else rc=1; fi
owners=$(find "$TMP/logs" -type f -printf '%u:%g %p\n' 2>&1)
if [ "$rc" = 0 ] && [ -n "$owners" ] && ! grep -qv '^10001:10001 ' <<<"$owners"; then rc=0; else rc=1; fi
check "logs land in the volume: the access log has the request, files owned by 10001" "$rc" "status $STATUS" "$owners" "$(tail -n 2 "$TMP/logs/t/http/proxied.log" 2>&1)"

# HUP: a new address for the proxied site, read from the mounted directory.
http "$HTTP" reload.test /
before=$STATUS
sed -i 's/addresses: \["proxied.test"\]/addresses: ["proxied.test", "reload.test"]/' "$CONF"
docker kill -s HUP "$MAIN" >/dev/null || true
if [ "$before" = 404 ] && poll 15 http_is "$HTTP" reload.test / 200 && [ "$BODY" = "origin says $TOKEN" ] \
    && [ "$(state "$MAIN" '{{.State.Running}} {{.State.StartedAt}} {{.RestartCount}}')" = "true $STARTED_AT 0" ]; then rc=0; else rc=1; fi
check "docker kill -s HUP reloads: the new address answers (404 before), same container process" "$rc" \
    "before $before, after $STATUS: $BODY" "$(docker logs "$MAIN" 2>&1 | tail -n 5)"
metrics=$(curl -sS --max-time 5 "http://127.0.0.1:$ADMIN/metrics" 2>&1) || true
grep -Eq '^edgeward_config_reloads_total\{result="success"\} 1$' <<<"$metrics" && rc=0 || rc=1
check "the reload is counted: edgeward_config_reloads_total{result=\"success\"} 1" "$rc" "$(grep reloads_total <<<"$metrics")"

# docker stop with a request in flight: it finishes, then edgeward exits 0.
curl -sS -o "$TMP/slow.body" -w '%{http_code}' --max-time 30 -H 'Host: proxied.test' \
    "http://127.0.0.1:$HTTP/slow" >"$TMP/slow.status" 2>&1 &
slow_pid=$!
poll 10 test -e "$TMP/origin/slow-started" || true
t0=$(date +%s%N)
docker stop -t 30 "$MAIN" >/dev/null || true
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$slow_pid" || true
exit_state=$(state "$MAIN" '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}')
main_log=$(docker logs "$MAIN" 2>&1)
if [ "$(cat "$TMP/slow.status")" = 200 ] && [ "$(cat "$TMP/slow.body")" = "slow done" ] \
    && [ "$exit_state" = "exited 0 false" ] && [ "$ms" -le $((GRACE * 1000)) ] \
    && grep -q 'SIGTERM: graceful stop; no new connections, 1 request(s) in flight' <<<"$main_log"; then rc=0; else rc=1; fi
check "docker stop: the request in flight gets its 200, exit code 0 after ${ms} ms (grace_period ${GRACE}s)" "$rc" \
    "in-flight request: $(cat "$TMP/slow.status") $(cat "$TMP/slow.body" 2>/dev/null)" "state: $exit_state" \
    "$(grep -E 'SIGTERM|in flight|stopped' <<<"$main_log")"


# ----------------------------------------------------------------- compose
echo "== compose (docker/compose.yml: edgeward + Redis, cache in Redis)"
if ! command -v docker-compose >/dev/null 2>&1; then
    bad "docker-compose is installed (scripts/deps.sh ci installs Debian's)"
else
    read -r C_HTTP C_ADMIN C_REDIS < <(free_ports 3)
    PREFIX="edgeward-$RUN_ID:"
    mkdir -p "$TMP/compose"
    cat >"$TMP/compose/edgeward.yaml" <<EOF
listen: ["127.0.0.1:$C_HTTP"]
grace_period: ${GRACE}s
admin:
  listen: "127.0.0.1:$C_ADMIN"
cache:
  storage: redis
  redis:
    url: "redis://127.0.0.1:$C_REDIS/0"
    key_prefix: "$PREFIX"
accounts:
  demo:
    log_dir: /var/log/edgeward/demo
    sites:
      web:
        addresses: ["demo.localhost"]
        upstream:
          command: "perl /usr/share/edgeward/demo/server.pl"
          working_dir: /usr/share/edgeward/demo/www
        cache:
          enabled: true
EOF
    export EDGEWARD_IMAGE=$IMAGE REDIS_IMAGE EDGEWARD_CONFIG=$TMP/compose/edgeward.yaml \
        EDGEWARD_ADMIN_PORT=$C_ADMIN REDIS_PORT=$C_REDIS
    COMPOSE_UP=1
    out=$(compose up -d --no-build 2>&1) && rc=0 || rc=$?
    check "docker-compose up -d: redis healthy, then edgeward" "$rc" "$out"
    cid=$(compose ps -q edgeward 2>/dev/null || true)
    rid=$(compose ps -q redis 2>/dev/null || true)
    if [ -n "$cid" ] && poll 60 sh -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' '$cid')\" = healthy ]"; then rc=0; else rc=1; fi
    check "compose: edgeward healthy (its healthcheck on the admin port)" "$rc" "$(state "$cid" '{{json .State.Health}}' 2>&1)" "$(compose logs --tail 10 2>&1)"

    http "$C_HTTP" demo.localhost /
    first="$STATUS $(header Cache-Status)"
    http "$C_HTTP" demo.localhost /
    second="$STATUS $(header Cache-Status)"
    if [ "$first" = "200 edgeward; fwd=miss; stored" ] && [ "$second" = "200 edgeward; hit" ] \
        && grep -q 'Hello from the edgeward demo site' <<<"$BODY"; then rc=0; else rc=1; fi
    check "compose: the demo page is stored, then a hit" "$rc" "first: $first" "second: $second" "$BODY"

    keys=$(docker exec "$rid" redis-cli -p "$C_REDIS" --scan --pattern "${PREFIX}e:*" 2>&1) || true
    [ -n "$keys" ] && rc=0 || rc=1
    check "compose: the entry is in Redis (redis-cli --scan ${PREFIX}e:*)" "$rc" "$keys"

    # A new edgeward process has nothing in memory: a hit now comes from Redis.
    before=$(state "$cid" '{{.State.StartedAt}}')
    out=$(compose restart edgeward 2>&1) || true
    after=$(state "$cid" '{{.State.StartedAt}}')
    if [ "$before" != "$after" ] && poll 60 http_is "$C_ADMIN" localhost /health 200; then
        http "$C_HTTP" demo.localhost /
        third="$STATUS $(header Cache-Status)"
    else
        third="edgeward did not come back after the restart ($before, $after): $out"
    fi
    [ "$third" = "200 edgeward; hit" ] && rc=0 || rc=1
    check "compose: after docker-compose restart edgeward (a new process), the first request is a hit from Redis" "$rc" "$third"

    out=$(compose stop 2>&1) || true
    codes="$(state "$cid" '{{.State.ExitCode}}') $(state "$rid" '{{.State.ExitCode}}')"
    [ "$codes" = "0 0" ] && rc=0 || rc=1
    check "compose: docker-compose stop, exit codes 0 (edgeward, redis)" "$rc" "$codes" "$out"
fi

summary
[ "$FAIL" = 0 ]
