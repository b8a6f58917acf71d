//! Criterion suite of the hot paths (issue #14): time per call and throughput, for people.
//! `cargo bench -p benches --bench hot_paths` (add `-- <filter>` for one group); the CI gate is
//! the instruction-count suite beside it, over the same functions.

use std::hint::black_box;

use benches::{api::Api, codec, generator, stages};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn router(c: &mut Criterion) {
    let api = Api::new();
    let mut g = c.benchmark_group("api");
    g.throughput(Throughput::Elements(1));
    g.bench_function("create", |b| {
        b.iter(|| api.create(black_box("Printer jam")))
    });
    let id = api.create("Printer jam");
    g.bench_function("get", |b| b.iter(|| api.get(black_box(id))));
    g.bench_function("list_cache_hit", |b| b.iter(|| api.list()));
    g.bench_function("close", |b| {
        b.iter_batched(
            || api.create("Printer jam"),
            |id| api.close(id),
            BatchSize::SmallInput,
        );
    });
    api.create_with_key("Printer jam", "bench-key-0001");
    g.bench_function("create_idempotent_replay", |b| {
        b.iter(|| api.replay("Printer jam", black_box("bench-key-0001")));
    });
    g.bench_function("error_envelope", |b| b.iter(|| api.rejected()));
    g.finish();
}

fn json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    let ticket = codec::ticket(7);
    g.bench_function("ticket_round_trip", |b| {
        b.iter(|| codec::ticket_round_trip(black_box(&ticket)));
    });
    let envelope = codec::envelope(7);
    g.bench_function("envelope_round_trip", |b| {
        b.iter(|| codec::envelope_round_trip(black_box(&envelope)));
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    let lists = codec::Lists::new();
    g.bench_function("list_l1_hit", |b| b.iter(|| lists.hit()));
    g.bench_function("keys", |b| {
        b.iter(|| codec::keys(black_box("bench-user"), black_box("bench-key-0001")));
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    let rows = stages::claimed_rows();
    g.throughput(Throughput::Elements(stages::RELAY_BATCH));
    g.bench_function("relay_records", |b| {
        b.iter(|| stages::records(black_box(&rows), "tickets.events"));
    });
    let values = stages::message_values();
    g.throughput(Throughput::Elements(stages::NOTIFIER_BATCH));
    g.bench_function("notifier_batch", |b| {
        b.iter(|| stages::notification_batch(black_box(&values)));
    });
    g.finish();
}

fn loadgen(c: &mut Criterion) {
    let mut g = c.benchmark_group("loadgen");
    g.throughput(Throughput::Elements(generator::SAMPLES));
    g.bench_function("pacer_claim", |b| {
        b.iter_batched(
            generator::Slots::new,
            |slots| slots.claim_all(),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("hdr_record", |b| {
        b.iter_batched_ref(
            generator::histogram,
            generator::hdr_record,
            BatchSize::SmallInput,
        );
    });
    let samples = generator::samples();
    g.bench_function("recorder_record", |b| {
        b.iter_batched_ref(
            generator::recorder,
            |r| generator::record_all(r, black_box(&samples)),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, router, json, cache, pipeline, loadgen);
criterion_main!(benches);
