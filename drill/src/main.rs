//! `drill`: the failover drills. The same binary is each process of the drilled system: with
//! `DRILL_ROLE` set it runs the API, a relay or a notifier (configured by the environment, as
//! the standalone binaries are), so a drill can kill -9 a real process and start it again
//! without a second build.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match std::env::var("DRILL_ROLE").as_deref() {
        Ok("api") => service::run_cli().await.map(|()| ok),
        Ok("relay") => relay::run_cli().await.map(|()| ok),
        Ok("notifier") => notifier::run_cli().await.map(|()| ok),
        Ok(other) => anyhow::bail!("DRILL_ROLE={other:?}: expected api, relay or notifier"),
        Err(_) => drill::run_cli().await,
    }
}
