#!/usr/bin/env bash
# Peak memory of the release service while N uploads of a large file run at once. Streaming keeps
# the growth near N x ATTACHMENT_PART_BYTES (5 MiB); buffering whole files would need N x the
# file size. Uses its own database and key prefix, and removes its objects at the end with the
# service's own sweeper.
#   reports/2026-11-23-attachments-1mib/memory.sh            (N=8 MB=50)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-8}
MB=${MB:-50}
PORT=${PORT:-28181}
infra/local/stack up >/dev/null 2>&1
eval "$(infra/local/stack env)"
cargo build -q --release -p service
WORK=$(mktemp -d)
DB=bench_memory_$$
ADMIN=${DATABASE_URL%/*}/postgres
export DATABASE_URL=${DATABASE_URL%/*}/$DB
export S3_KEY_PREFIX=bench-memory-$$/ ATTACHMENT_MAX_BYTES=$((64 * 1024 * 1024))
export ATTACHMENT_UPLOAD_TIMEOUT=20s ATTACHMENT_SWEEP_GRACE=21s ATTACHMENT_SWEEP_INTERVAL=0s
psql -X -q "$ADMIN" -c "CREATE DATABASE $DB"
LISTEN_ADDR=127.0.0.1:$PORT ACCESS_LOG=false RUST_LOG=warn target/release/service --migrate >"$WORK/service.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; psql -X -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf "$WORK"' EXIT
until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done

hwm() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$PID/status"; }
rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status"; }
H=(-H "X-User-Id: bench-memory")
TICKET=$(curl -fsS "${H[@]}" -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/v1/tickets" \
  -d '{"title":"memory bench","description":"large uploads"}' | sed -E 's/.*"id":"([^"]+)".*/\1/')
URL=http://127.0.0.1:$PORT/v1/tickets/$TICKET/attachments
head -c 1048576 /dev/urandom >"$WORK/small.bin"
head -c $((MB * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
curl -fsS -o /dev/null "${H[@]}" -F "file=@$WORK/small.bin" "$URL"   # warm-up
BEFORE=$(hwm)
for i in $(seq "$N"); do
  curl -fsS -o /dev/null -w '%{http_code} ' "${H[@]}" -F "file=@$WORK/big.bin;filename=big-$i.bin" "$URL" &
done
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
echo
AFTER=$(hwm)
STORED=$(psql -X -qtA "$DATABASE_URL" -c "SELECT count(*) || ' rows, ' || (sum(size_bytes) / 1048576)::bigint || ' MiB' FROM attachments WHERE size_bytes = $((MB * 1024 * 1024))")
echo "$N concurrent uploads of $MB MiB: stored $STORED"
echo "service peak RSS before: ${BEFORE} MiB, after: ${AFTER} MiB, growth: $((AFTER - BEFORE)) MiB (RSS now $(rss) MiB)"
echo "whole-file buffering would need at least $((N * MB)) MiB more; one 5 MiB part per upload is $((N * 5)) MiB"

# Clean up with the service's own sweeper: forget the rows, wait out the grace, sweep.
psql -X -q "$DATABASE_URL" -c "DELETE FROM attachments"
sleep 22
RUST_LOG=error target/release/service sweep-attachments
