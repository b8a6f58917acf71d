//! Placeholder: Kafka consumer that turns ticket events into notifications exactly once.
//! Not built yet (tracked in issue #3); it refuses to run rather than pretend to work.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    eprintln!("notifier is not implemented yet (issue #3)");
    std::process::ExitCode::from(2)
}
