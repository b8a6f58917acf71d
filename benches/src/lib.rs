//! Benchmarks of servicedesk-lite (SPEC H-4). The hot paths with fixed inputs live here, shared by
//! the criterion suite (`benches/hot_paths.rs`, time and throughput) and the instruction-count
//! suite (`benches/instructions.rs`, callgrind via gungraun, the CI gate), so both measure the
//! same work. The pipeline macro-benchmarks are the binaries in `src/bin/`.

pub mod api;
pub mod codec;
pub mod gate;
pub mod generator;
pub mod stages;

/// The runtime every fixture drives its async work on: one thread, so a bench's instruction count
/// holds no other thread's work.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}
