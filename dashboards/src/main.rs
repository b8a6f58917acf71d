//! `cargo run -p dashboards`: writes dashboards/*.json from the definitions in lib.rs.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, dashboard) in dashboards::all() {
        std::fs::write(dir.join(name), dashboards::render(&dashboard))?;
        println!("wrote dashboards/{name}");
    }
    Ok(())
}
