#!/bin/bash
# usage: measure.sh LABEL DRILL [extra env assignments...]
cd /work/main
export CARGO_TARGET_DIR=$HOME/.cache/servicedesk-lite/target
eval "$(STACK_KAFKA_NODES=3 infra/local/stack env)"
LABEL=$1 DRILL=$2; shift 2
OUT=/tmp/drills-$LABEL; rm -rf $OUT
( env "$@" $CARGO_TARGET_DIR/release/drill $DRILL --out $OUT > /tmp/drill-$LABEL.log 2>&1; echo EXIT $? >> /tmp/drill-$LABEL.log ) &
for i in $(seq 1 120); do grep -q "users launched" /tmp/drill-$LABEL.log && break; sleep 1; done
sleep 5
q="select sum(xact_commit) from pg_stat_database"
a=$(psql "$DATABASE_URL" -Atc "$q"); python3 /tmp/cpu.py 40 > /tmp/cpu-$LABEL.txt; b=$(psql "$DATABASE_URL" -Atc "$q")
echo "pg commits/s: $(( (b-a)/40 ))" >> /tmp/cpu-$LABEL.txt
wait
