#!/bin/bash
# usage: measure.sh LABEL DRILL : drill + process CPU + Kafka thread CPU over 40 s of load
cd /work/main
export CARGO_TARGET_DIR=$HOME/.cache/servicedesk-lite/target
eval "$(STACK_KAFKA_NODES=3 infra/local/stack env)"
LABEL=$1 DRILL=$2
OUT=/tmp/drills-$LABEL; rm -rf $OUT
( $CARGO_TARGET_DIR/release/drill $DRILL --out $OUT > /tmp/drill-$LABEL.log 2>&1; echo EXIT $? >> /tmp/drill-$LABEL.log ) &
for i in $(seq 1 120); do grep -q "users launched" /tmp/drill-$LABEL.log && break; sleep 1; done
sleep 5
python3 reports/drills/2026-12-07-kafka-jvm/jthreads.py 40 > /tmp/jt-$LABEL.txt & python3 reports/drills/2026-12-07-relay-kill-ab/cpu.py 40 > /tmp/cpu-$LABEL.txt
wait
echo "== $LABEL"; head -4 /tmp/cpu-$LABEL.txt; tail -1 /tmp/cpu-$LABEL.txt; head -4 /tmp/jt-$LABEL.txt; tail -1 /tmp/jt-$LABEL.txt
grep "^| \[" $OUT/*/README.md | cut -c100-330
