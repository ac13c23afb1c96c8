#!/usr/bin/env bash
# Record pgo/edgeward.profdata.gz, the profile scripts/build optimises the
# release binary with (see pgo/README.md):
#   1. build an instrumented edgeward (-Cprofile-generate) in target/pgo-gen,
#      then the two Pingora references of bench/ (pingora-static,
#      pingora-proxy-min), which bench/ compares edgeward with and which are
#      only fair references when built like it;
#   2. run them under the bench/ workloads below, which count how often each
#      branch and call of the real binaries runs on the traffic they serve;
#   3. merge the counts (llvm-profdata, from rustup's llvm-tools component,
#      installed when missing) into pgo/edgeward.profdata.gz, and write the
#      commit and the workloads into pgo/SOURCE.
# Needs what the bench scripts need (nginx, wrk, redis-server, h2load, openssl,
# libnginx-mod-http-modsecurity: they install what is missing on Debian) and
# about 20 minutes on 2 cores (15 of them the two instrumented builds; less
# when target/pgo-gen is still there from an earlier run).
#
# Usage: pgo/train.sh [--keep]   (--keep: leave the raw counts and the bench
#                                 reports in the work dir it names)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
KEEP=0
case "${1:-}" in
    --keep) KEEP=1 ;;
    "") ;;
    *) echo "usage: pgo/train.sh [--keep]" >&2; exit 2 ;;
esac

log() { echo "pgo/train.sh: $*" >&2; }

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
    log "installing rustup's llvm-tools component (llvm-profdata)"
    rustup component add llvm-tools
fi
[ -x "$PROFDATA" ] || { log "no llvm-profdata at $PROFDATA"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeward-pgo.XXXXXX")
if [ "$KEEP" = 0 ]; then trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK/raw" "$WORK/reports"

# Two builds, as they ship: edgeward alone (scripts/build, --bin edgeward),
# then the two examples (their dev-dependencies turn on more features of
# shared crates; features are part of each crate's hash, and so of the
# symbol names the profile is matched by: an edgeward built together with
# the examples would be another binary to the profile).
# The flags reach the build scripts and proc macros too, which then write
# their own counts while cargo runs them: those go to build-raw, a fixed
# path (so that the instrumented build stays cached between trainings), and
# are dropped. The servers' counts go to raw (LLVM_PROFILE_FILE, below).
GEN_FLAGS="-Cprofile-generate=$ROOT/target/pgo-gen/build-raw"
log "instrumented build of edgeward (target/pgo-gen)"
CARGO_ENCODED_RUSTFLAGS=$GEN_FLAGS \
    cargo build --release --locked --target-dir target/pgo-gen --bin edgeward
mkdir -p "$WORK/bin"
cp target/pgo-gen/release/edgeward "$WORK/bin/"
log "instrumented build of pingora-static and pingora-proxy-min"
CARGO_ENCODED_RUSTFLAGS=$GEN_FLAGS \
    cargo build --release --locked --target-dir target/pgo-gen \
    --example pingora-static --example pingora-proxy-min
# bench/cost.sh --bin-dir takes all three from one directory.
cp target/pgo-gen/release/examples/pingora-static \
    target/pgo-gen/release/examples/pingora-proxy-min "$WORK/bin/"
rm -rf target/pgo-gen/build-raw
BIN=$WORK/bin/edgeward

# The workloads: what edgeward spends its time on in production, each long
# enough for its hot paths to dominate its start-up and shutdown. Every
# instrumented process merges its counts into the same pool file when it exits.
WORKLOADS=(
    "bench/cost.sh --servers edgeward --no-callgrind --clean"
    "bench/cost.sh --servers edgeward --no-callgrind --clean --body-kib 16 --connections 50"
    "bench/cost.sh --servers edgeward --no-callgrind --clean --hit memory --body-kib 10"
    "bench/cost.sh --servers edgeward --no-callgrind --clean --hit redis --body-kib 100"
    "bench/waf.sh --duration 2 --rounds 1 --conns 16 --profiles basic\ full"
    "bench/tls.sh --duration 2 --rounds 1 --connections 16 --tests hs-req\ https\ h2 --clean"
    "bench/access_log.sh --duration 2 --rounds 1 --clean"
)
# The references' share: what bench/cost.sh, proxy.sh and cache.sh run them
# for (the instrumented binaries, through --bin-dir).
REFERENCE_WORKLOADS=(
    "bench/cost.sh --servers pingora-static\ pingora-proxy-min --no-callgrind --clean"
    "bench/cost.sh --servers pingora-static --no-callgrind --clean --hit memory --body-kib 10"
)
run_workload() {   # WORKLOAD ARGS...: run it with ARGS appended, report kept
    local w=$1 name extra
    shift
    extra=$(printf ' %q' "$@")
    name=$(echo "$w" | tr -c 'a-z0-9\n' '_' | cut -c1-100)
    log "$w$extra"
    eval "$w$extra" > "$WORK/reports/$name.md" 2> "$WORK/reports/$name.err" \
        || { log "failed: $w (see $WORK/reports/$name.err)"; tail -20 "$WORK/reports/$name.err" >&2; exit 1; }
}
# %m: one file per instrumented binary, which every process of it merges into.
export LLVM_PROFILE_FILE="$WORK/raw/%m.profraw"
for w in "${WORKLOADS[@]}"; do run_workload "$w" --edgeward "$BIN"; done
for w in "${REFERENCE_WORKLOADS[@]}"; do run_workload "$w" --bin-dir "$WORK/bin"; done

shopt -s nullglob
raws=("$WORK"/raw/*.profraw)
[ "${#raws[@]}" -gt 0 ] || { log "no counts were written (did the servers exit cleanly?)"; exit 1; }
unset LLVM_PROFILE_FILE
"$PROFDATA" merge -o "$WORK/edgeward.profdata" "${raws[@]}"
gzip -9 -n -c "$WORK/edgeward.profdata" > pgo/edgeward.profdata.gz.tmp
mv pgo/edgeward.profdata.gz.tmp pgo/edgeward.profdata.gz

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Only what the build compiles counts: a change to a script or a document
# does not make the profile another code's.
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no -- src vendor benches bench/'*.rs' \
        profiles Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    dirty=" (with uncommitted changes to the code)"
fi
{
    echo "commit: $commit$dirty"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rustc: $(rustc -V)"
    echo "llvm-profdata: $("$PROFDATA" --version 2>&1 | sed -n 's/^ *LLVM version //p' | head -1)"
    echo "workloads (each with --edgeward <instrumented edgeward>):"
    for w in "${WORKLOADS[@]}"; do echo "  $w"; done
    echo "reference workloads (each with --bin-dir <instrumented binaries>):"
    for w in "${REFERENCE_WORKLOADS[@]}"; do echo "  $w"; done
} > pgo/SOURCE
log "wrote pgo/edgeward.profdata.gz ($(wc -c < pgo/edgeward.profdata.gz) bytes) and pgo/SOURCE"
[ "$KEEP" = 0 ] || log "kept: $WORK"
