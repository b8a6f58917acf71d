SHELL := /bin/bash
STACK := infra/local/stack
# Tests that need the stack fail (instead of skipping) when it is missing.
TEST_ENV := eval "$$($(STACK) env)" && export SERVICEDESK_REQUIRE_STACK=1 &&

.PHONY: check fmt fmt-check lint test test-cluster e2e bench bench-gate bench-baseline bench-compare \
	stack-up stack-down stack-status migrate run run-stack

## check: formatting, clippy -D warnings, then all tests on the local stack
check: fmt-check lint test

fmt:
	cargo fmt --all

fmt-check:
	cargo fmt --all -- --check

## lint: clippy -D warnings everywhere; outside tests no function over 80 lines (clippy.toml);
## no module cycles inside a crate
lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --lib --bins -- -D warnings -W clippy::too_many_lines
	python3 infra/dev/module-cycles

## test: install/start the local stack (idempotent), run every test against it (single-node
## Kafka), the e2e check, the offline deployment checks, then the failover tests on the 3-node
## Kafka cluster
test: stack-up
	$(TEST_ENV) cargo test --workspace --no-run
	@# Linking the test binaries leaves gigabytes for the kernel to write back; the stack's Postgres
	@# fsyncs behind them, and the first live tests saw 5.7 s commits. Flush before any test runs.
	sync
	$(TEST_ENV) cargo test --workspace
	E2E_NO_BUILD=1 infra/local/e2e
	infra/deploy/check
	$(MAKE) test-cluster

## test-cluster: switch the stack to the 3-node Kafka cluster and run the broker failover tests
## (--workspace: the same feature set as `make test`, so nothing is rebuilt)
test-cluster:
	STACK_KAFKA_NODES=3 $(STACK) up
	export STACK_KAFKA_NODES=3 && $(TEST_ENV) export SERVICEDESK_REQUIRE_CLUSTER=1 && \
	  cargo test --workspace --test failover -- --test-threads 1 --nocapture

## bench: the criterion suite of the hot paths (time and throughput per call)
bench:
	cargo bench -p benches --bench hot_paths

## bench-gate: instruction counts of the hot paths (callgrind) against benches/baseline.json;
## fails when one grew by more than 1 %. bench-baseline: accept this build's counts (commit them).
bench-gate:
	infra/dev/bench-gate

bench-baseline:
	infra/dev/bench-gate --update

## bench-compare: five short embedded loadgen runs compared with the committed run set (informational)
bench-compare:
	infra/dev/bench-compare

## e2e: service + relay + notifier on the local stack, one ticket through the whole pipeline
e2e:
	infra/local/e2e

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

migrate: stack-up
	eval "$$($(STACK) env)" && cargo run -q -p service -- migrate

## run: the API in memory mode; run-stack: the API on the local stack
run:
	cargo run --release -p service

run-stack: stack-up
	eval "$$($(STACK) env)" && cargo run --release -p service -- --migrate
