//! Placeholder: Open-model load generator with coordinated-omission-free percentiles.
//! Not built yet (tracked in issue #4); it refuses to run rather than pretend to work.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    eprintln!("loadgen is not implemented yet (issue #4)");
    std::process::ExitCode::from(2)
}
