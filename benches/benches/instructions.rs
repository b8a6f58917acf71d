//! Instruction counts of the hot paths (issue #14): the same functions and fixed inputs as the
//! criterion suite, each run once under callgrind by gungraun. Instruction counts repeat on a
//! noisy shared machine where times do not, so these are what CI gates on:
//! `infra/dev/bench-gate` (compare with `benches/baseline.json`), `--update` to accept new counts.
//!
//! Each bench takes its prepared state as an argument (built by a setup outside the measurement)
//! and hands it back, so building and dropping that state is not counted either.
//!
//! Each bench ends by running the caches' housekeeping, which moka otherwise runs when enough time
//! has passed: under callgrind a bench takes seconds, and whether that work fell inside a bench
//! moved its count by up to 9 %. What is left of that effect only ever adds instructions, so the
//! gate takes each bench's least count over three runs (`reports/2026-11-27-benches/`).

use std::hint::black_box;

use benches::api::Api;
use benches::{codec, generator, stages};
use gungraun::prelude::*;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Calls per bench of one request or one value: several, so one-off first-call costs weigh
/// little.
const REQUESTS: usize = 16;

/// An API that has served one create: one-off costs (the caches' first housekeeping, lazy
/// statics) are behind it, so they do not land in one run's count and not in the next.
fn warm_api() -> Api {
    let api = Api::new();
    api.create("Printer jam");
    api.settle();
    api
}

fn api_with_ticket() -> (Api, uuid::Uuid) {
    let api = warm_api();
    let id = api.create("Printer jam");
    api.settle();
    (api, id)
}

fn api_with_open_tickets() -> (Api, Vec<uuid::Uuid>) {
    let api = warm_api();
    let ids = (0..REQUESTS).map(|_| api.create("Printer jam")).collect();
    api.settle();
    (api, ids)
}

fn api_with_cached_list() -> Api {
    let api = warm_api();
    for _ in 0..20 {
        api.create("Printer jam");
    }
    api.list();
    api.settle();
    api
}

fn api_with_key() -> Api {
    let api = warm_api();
    api.create_with_key("Printer jam", "bench-key-0001");
    api.settle();
    api
}

#[library_benchmark]
#[bench::warm(warm_api())]
fn api_create(api: Api) -> Api {
    for _ in 0..REQUESTS {
        black_box(api.create(black_box("Printer jam")));
    }
    api.settle();
    api
}

#[library_benchmark]
#[bench::one_ticket(api_with_ticket())]
fn api_get(input: (Api, uuid::Uuid)) -> (Api, uuid::Uuid) {
    for _ in 0..REQUESTS {
        black_box(input.0.get(black_box(input.1)));
    }
    input.0.settle();
    input
}

#[library_benchmark]
#[bench::cached_page(api_with_cached_list())]
fn api_list_cache_hit(api: Api) -> Api {
    for _ in 0..REQUESTS {
        black_box(api.list());
    }
    api.settle();
    api
}

#[library_benchmark]
#[bench::open_tickets(api_with_open_tickets())]
fn api_close(input: (Api, Vec<uuid::Uuid>)) -> (Api, Vec<uuid::Uuid>) {
    for id in &input.1 {
        black_box(input.0.close(*id));
    }
    input.0.settle();
    input
}

#[library_benchmark]
#[bench::used_key(api_with_key())]
fn api_create_idempotent_replay(api: Api) -> Api {
    for _ in 0..REQUESTS {
        api.replay("Printer jam", black_box("bench-key-0001"));
    }
    api.settle();
    api
}

#[library_benchmark]
#[bench::empty_title(warm_api())]
fn api_error_envelope(api: Api) -> Api {
    for _ in 0..REQUESTS {
        black_box(api.rejected());
    }
    api.settle();
    api
}

#[library_benchmark]
#[bench::open(codec::ticket(7))]
fn json_ticket_round_trip(ticket: contracts::Ticket) -> contracts::Ticket {
    for _ in 0..REQUESTS {
        black_box(codec::ticket_round_trip(black_box(&ticket)));
    }
    ticket
}

#[library_benchmark]
#[bench::created(codec::envelope(7))]
fn json_envelope_round_trip(envelope: contracts::EventEnvelope) -> contracts::EventEnvelope {
    for _ in 0..REQUESTS {
        black_box(codec::envelope_round_trip(black_box(&envelope)));
    }
    envelope
}

#[library_benchmark]
#[bench::first_page(codec::Lists::new())]
fn cache_list_l1_hit(lists: codec::Lists) -> codec::Lists {
    for _ in 0..REQUESTS {
        black_box(lists.hit());
    }
    lists.settle();
    lists
}

#[library_benchmark]
fn cache_keys() {
    for _ in 0..REQUESTS {
        black_box(codec::keys(
            black_box("bench-user"),
            black_box("bench-key-0001"),
        ));
    }
}

#[library_benchmark]
#[bench::batch(stages::claimed_rows())]
fn relay_records(rows: Vec<relay::outbox::OutboxRow>) -> Vec<relay::outbox::OutboxRow> {
    black_box(stages::records(black_box(&rows), "tickets.events"));
    rows
}

#[library_benchmark]
#[bench::batch(stages::message_values())]
fn notifier_batch(values: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    black_box(stages::notification_batch(black_box(&values)));
    values
}

#[library_benchmark]
#[bench::released(generator::Slots::new())]
fn loadgen_pacer_claim(slots: generator::Slots) -> generator::Slots {
    black_box(slots.claim_all());
    slots
}

#[library_benchmark]
#[bench::empty(generator::histogram())]
fn loadgen_hdr_record(mut h: hdrhistogram::Histogram<u64>) -> hdrhistogram::Histogram<u64> {
    generator::hdr_record(black_box(&mut h));
    h
}

#[library_benchmark]
#[bench::window((generator::recorder(), generator::samples()))]
fn loadgen_recorder_record(
    mut input: (loadgen::record::Recorder, Vec<loadgen::record::Sample>),
) -> (loadgen::record::Recorder, Vec<loadgen::record::Sample>) {
    black_box(generator::record_all(&mut input.0, black_box(&input.1)));
    input
}

library_benchmark_group!(
    name = api,
    benchmarks = [
        api_create,
        api_get,
        api_list_cache_hit,
        api_close,
        api_create_idempotent_replay,
        api_error_envelope
    ]
);

library_benchmark_group!(
    name = json_and_cache,
    benchmarks = [
        json_ticket_round_trip,
        json_envelope_round_trip,
        cache_list_l1_hit,
        cache_keys
    ]
);

library_benchmark_group!(
    name = pipeline,
    benchmarks = [relay_records, notifier_batch]
);

library_benchmark_group!(
    name = load_generator,
    benchmarks = [
        loadgen_pacer_claim,
        loadgen_hdr_record,
        loadgen_recorder_record
    ]
);

main!(
    library_benchmark_groups = api,
    json_and_cache,
    pipeline,
    load_generator
);
