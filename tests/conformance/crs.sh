#!/usr/bin/env bash
# CRS 3.3.4 regression suite against edgeward's WAF, through the proxy.
#
#   tests/conformance/crs.sh [extra crs_ftw.py run options, e.g. --include '^942']
#
# Needs the kit in ../shared (tools/crs-ftw, data/crs-3.3.4-tests), python3
# with PyYAML, libmodsecurity3 and modsecurity-crs. Uses the CRS test settings
# of the reference (nginx-modsec/crs-regression.conf.in): Debian's CRS 3.3.4
# on the reference's ModSecurity base settings, paranoia level 4,
# DetectionOnly, utf8 validation, arg_name_length=100, arg_length=400,
# combined_file_sizes=65535; every CRS file loaded. Correlation by
# X-Request-Id with edgeward's JSON event log (one line per request that
# matched any rule, holding every id).
#
# Fails when a test fails that is not in crs-known-failures.yaml, when fewer
# than MIN_PASSED tests pass (default 2348 of 2395, the whole suite; not
# checked when run options such as --include are given), or when edgeward
# lost a log line (edgeward_log_dropped_lines_total > 0 on its admin
# listener at the end): a lost WAF event would let a "no match" stage pass.
# Exit 2 (and a "not run" line) when the kit is missing.
#
# Environment: SHARED (default ../shared), EDGEWARD (binary; default: build
# target/release/edgeward), MIN_PASSED, KEEP=1 keeps the run directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared}
KIT=$SHARED/tools/crs-ftw
TESTS=$SHARED/data/crs-3.3.4-tests
KNOWN=$ROOT/tests/conformance/crs-known-failures.yaml
MIN_PASSED=${MIN_PASSED:-2348}
if [ ! -d "$KIT" ] || [ ! -d "$TESTS" ]; then
    echo "crs.sh: not run: no CRS kit in $SHARED (tools/crs-ftw, data/crs-3.3.4-tests)" >&2
    exit 2
fi

if [ -z "${EDGEWARD:-}" ]; then
    "$ROOT/scripts/build" --quiet --bin edgeward
    EDGEWARD=${CARGO_TARGET_DIR:-$ROOT/target}/release/edgeward
fi

RUN=$(mktemp -d)
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    if [ -n "${EW_PID:-}" ]; then kill "$EW_PID" 2>/dev/null || true; fi
    if [ -n "${BE_PID:-}" ]; then kill "$BE_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BE_PORT=$(free_port)
EW_PORT=$(free_port)
ADMIN_PORT=$(free_port)

# Profiles: ours, plus "regression" = the reference's settings.
mkdir -p "$RUN/profiles"
cp "$ROOT"/profiles/* "$RUN/profiles/"
grep -v '^SecUnicodeMapFile' "$KIT/nginx-modsec/modsec-base.conf" > "$RUN/profiles/modsecurity.conf"
cp /etc/modsecurity/crs/crs-setup.conf "$RUN/profiles/crs-setup.conf" 2>/dev/null \
    || cp "$ROOT/profiles/crs-setup.conf" "$RUN/profiles/crs-setup.conf"
cat > "$RUN/profiles/regression.yaml" <<'YAML'
description: CRS regression-test settings (every CRS file, PL4)
rules: ["*.conf"]
settings:
  paranoia_level: 4
  crs_validate_utf8_encoding: 1
  arg_name_length: 100
  arg_length: 400
  combined_file_sizes: 65535
YAML

: > "$RUN/waf-events.jsonl"
cat > "$RUN/edgeward.yaml" <<YAML
listen: ["127.0.0.1:$EW_PORT"]
admin: { listen: "127.0.0.1:$ADMIN_PORT" }
threads: 2
waf:
  profiles_dir: $RUN/profiles
  event_log: $RUN/waf-events.jsonl
  body_limit: 13107200
default_site: crs/localhost
accounts:
  crs:
    log_dir: $RUN/logs
    sites:
      localhost:
        addresses: [localhost]
        upstream: { address: "127.0.0.1:$BE_PORT" }
        access_log: { enabled: false }
        waf: { profile: regression, mode: detect }
YAML

python3 "$KIT/echo_backend.py" "$BE_PORT" > "$RUN/backend.log" 2>&1 &
BE_PID=$!
"$EDGEWARD" check -c "$RUN/edgeward.yaml"
RUST_LOG=warn "$EDGEWARD" run -c "$RUN/edgeward.yaml" > "$RUN/edgeward.log" 2>&1 &
EW_PID=$!
for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$EW_PORT/" -H 'Host: localhost' \
        && curl -s -o /dev/null "http://127.0.0.1:$BE_PORT/"; then break; fi
    sleep 0.1
done

set +e
python3 "$KIT/crs_ftw.py" run "$TESTS" --target "127.0.0.1:$EW_PORT" \
    --log jsonl:"$RUN/waf-events.jsonl" --correlate header --id-header X-Request-Id \
    --settle-ms 0 --max-wait-ms "${MAX_WAIT_MS:-150}" \
    --ignore "$KNOWN" --out "${OUT:-$RUN/crs-edgeward.jsonl}" "$@" | tee "$RUN/crs_ftw.out"
status=${PIPESTATUS[0]}
set -e

# Every WAF event must have been written: a dropped line turns an expected
# match into a pass of a "no match" stage.
dropped=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | awk '$1 == "edgeward_log_dropped_lines_total" { print $2 }')
if [ -z "$dropped" ]; then
    echo "crs: FAIL: no edgeward_log_dropped_lines_total on http://127.0.0.1:$ADMIN_PORT/metrics" >&2
    status=1
elif [ "$dropped" != 0 ]; then
    echo "crs: FAIL: edgeward dropped $dropped log line(s) (edgeward_log_dropped_lines_total); WAF events may be missing" >&2
    status=1
else
    echo "crs: edgeward_log_dropped_lines_total 0"
fi
if [ $# -eq 0 ]; then
    passed=$(awk '/^[0-9]+ passed, [0-9]+ failed/ { n = $1 } END { print n + 0 }' "$RUN/crs_ftw.out")
    if [ "$passed" -lt "$MIN_PASSED" ]; then
        echo "crs: FAIL: $passed tests passed, fewer than $MIN_PASSED" >&2
        status=1
    fi
fi
exit "$status"
