#!/bin/bash
# From-scratch release builds of loadgen: fat LTO (the committed profile) vs thin LTO + 16 CGUs.
cd /work/main
for p in fat thin; do
  rm -rf /tmp/prof-$p
  if [ $p = fat ]; then extra=(); else extra=(--config 'profile.release.lto="thin"' --config 'profile.release.codegen-units=16'); fi
  start=$(date +%s)
  CARGO_TARGET_DIR=/tmp/prof-$p /usr/bin/time -v cargo build --release -p loadgen "${extra[@]}" > /root/prof/build-$p.log 2>&1
  echo "$p build rc=$? wall=$(( $(date +%s) - start ))s" >> /root/prof/summary.txt
  # the incremental case: a one-line change in a workspace crate
  echo "// touch" >> service/src/lib.rs
  start=$(date +%s)
  CARGO_TARGET_DIR=/tmp/prof-$p cargo build --release -p loadgen "${extra[@]}" > /root/prof/rebuild-$p.log 2>&1
  echo "$p rebuild-after-service-edit rc=$? wall=$(( $(date +%s) - start ))s" >> /root/prof/summary.txt
  git checkout service/src/lib.rs
  cp /tmp/prof-$p/release/loadgen /root/prof/loadgen-$p
done
echo done >> /root/prof/summary.txt
