#!/usr/bin/env bash
# Issue #12.9, the part left open in reports/2026-11-27-build-profiles: the instruction counts of
# the hot paths (the callgrind suite of the CI gate, benches/benches/instructions.rs) built with
# the release profile (thin LTO, 16 codegen units; what `bench` inherits) and with fat LTO and one
# codegen unit for our crates (profile release-fat's settings). Counts are exact per build, so one
# run each. The fat build keeps the dependencies' 16 codegen units: fat LTO merges every crate's
# bitcode into one module and optimises that whole, so their pre-LTO split changes little. The
# other `lto` value still rebuilds every dependency (cargo keeps both builds side by side).
#   reports/2026-12-07-lto-instructions/run.sh    (from the repository root; ~25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=reports/2026-12-07-lto-instructions
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/servicedesk-lite/target}
# valgrind and the pinned gungraun-runner: infra/dev/bench-gate installs them (run it first)
command -v valgrind gungraun-runner >/dev/null || { echo "run infra/dev/bench-gate once first" >&2; exit 2; }
bench() {
  cargo bench -q -p benches --bench instructions "$@" -- --output-format=json
}
bench >"$OUT/thin.jsonl"
bench --config 'profile.bench.lto="fat"' --config 'profile.bench.codegen-units=1' \
  --config 'profile.bench.package."*".codegen-units=16' >"$OUT/fat.jsonl"
python3 "$OUT/table.py" "$OUT/thin.jsonl" "$OUT/fat.jsonl" >"$OUT/table.md"
cat "$OUT/table.md"
