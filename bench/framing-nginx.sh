#!/usr/bin/env bash
# The framing suite's cases (tests/fixtures/framing-cases.txt) against nginx
# (Debian's, as a reverse proxy) and edgeward, in front of the same two
# recording upstreams (RFC-strict and lenient, tests/common/recording.rs).
#
# The script starts nginx on ports it picks; the ignored test
# `nginx_differences` (tests/framing.rs) starts the recording upstreams on
# those ports and edgeward in front of them, sends every case to both
# proxies, and prints a Markdown table of the outcomes (the source of the
# table in docs/framing.md). It fails when edgeward and nginx differ on a
# case whose `why:` is missing, or nginx answers other than the case's
# `nginx:` line says. Not a benchmark: no timing is measured.
#
# Usage: bench/framing-nginx.sh [--out FILE] [--clean]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/framing-nginx.sh [options]

  --out FILE   also write the Markdown table to FILE
  --clean      delete the work dir (nginx config and logs) at the end
  -h, --help   this help
EOF
}

BENCH_TAG=framing-nginx
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=""
while (( $# )); do
    case $1 in
        --out) OUT=$2; [[ "$OUT" = /* ]] || OUT="$ORIG_PWD/$OUT"; shift 2 ;;
        --clean) CLEAN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

have nginx || install_missing nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v cargo >/dev/null 2>&1 || die "cargo not found"

make_workdir framing-nginx
bench_traps
read -r NGINX_PORT STRICT_PORT LENIENT_PORT <<<"$(free_ports 3)"

NG_DIR="$WORK/nginx"
mkdir -p "$NG_DIR/tmp"
site() {   # site NAME: a server block proxying NAME.test to upstream NAME
    cat <<EOF
    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name $1.test;
        location / {
            proxy_pass http://$1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id \$request_id;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
EOF
}
{
    nginx_main "$NG_DIR" 1
    echo "http {"
    nginx_http_common "$NG_DIR"
    cat <<EOF
    upstream strict { server 127.0.0.1:$STRICT_PORT; keepalive 4; }
    upstream lenient { server 127.0.0.1:$LENIENT_PORT; keepalive 4; }
    server { listen 127.0.0.1:$NGINX_PORT default_server; return 404; }
EOF
    site strict
    site lenient
    echo "}"
} >"$NG_DIR/nginx.conf"
"$NGINX" -t -p "$NG_DIR" -e "$NG_DIR/error.log" -c "$NG_DIR/nginx.conf" 2>"$WORK/nginx-t.log" \
    || { cat "$WORK/nginx-t.log" >&2; die "nginx -t failed"; }
start_bg nginx "$NGINX" -p "$NG_DIR" -e "$NG_DIR/error.log" -c "$NG_DIR/nginx.conf"
log "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') on 127.0.0.1:$NGINX_PORT; upstreams on $STRICT_PORT (strict), $LENIENT_PORT (lenient)"

REPORT="$WORK/framing.md"
# One cargo build at a time on the machine (see the helper rules): the lock
# is taken only when flock is there.
LOCK=()
command -v flock >/dev/null 2>&1 && LOCK=(flock /tmp/edgeward-cargo.lock)
(cd "$REPO_ROOT" && FRAMING_NGINX_PORT=$NGINX_PORT FRAMING_STRICT_PORT=$STRICT_PORT \
    FRAMING_LENIENT_PORT=$LENIENT_PORT FRAMING_REPORT=$REPORT \
    "${LOCK[@]}" cargo test --test framing nginx_differences -- --ignored --nocapture >"$WORK/test.log" 2>&1) \
    || { tail -n 60 "$WORK/test.log" >&2; die "nginx_differences failed (see $WORK/test.log)"; }

cat "$REPORT"
echo
[[ -z "$OUT" ]] || cp "$REPORT" "$OUT"
SUCCESS=1
