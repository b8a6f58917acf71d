//! Benchmarks of servicedesk-lite (SPEC H-4). The hot paths with fixed inputs live here, shared by
//! the criterion suite (`benches/hot_paths.rs`, time and throughput) and the instruction-count
//! suite (`benches/instructions.rs`, callgrind via gungraun, the CI gate), so both measure the
//! same work. The pipeline macro-benchmarks are the binaries in `src/bin/`.

pub mod api;
pub mod codec;
pub mod gate;
pub mod generator;
pub mod stages;
