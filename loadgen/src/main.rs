use clap::Parser;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The runtime is built here, not by `#[tokio::main]`: its thread count is a flag.
fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = loadgen::Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.run.runtime_threads())
        .enable_all()
        .build()?
        .block_on(loadgen::run_cli(cli))
}
