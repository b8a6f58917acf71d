//! The source revision the drill binary is built from (`git describe --always --dirty`), written
//! into every drill.json and scoreboard, so a scoreboard names the code it measured even when the
//! binary was run straight from the target dir, not through `infra/local/drill` (which builds
//! first). "-dirty" is the working tree as this script last ran: it reruns when HEAD or a branch
//! moves, and when a source file of a crate the binary links (or a migration) changes,
//! so an uncommitted edit is named "-dirty" in the very build that contains it.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let rev = git(&["describe", "--always", "--dirty", "--abbrev=12"]);
    println!(
        "cargo:rustc-env=DRILL_SOURCE_REVISION={}",
        rev.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rerun-if-changed=build.rs");
    for linked in [
        "contracts",
        "ops",
        "service",
        "relay",
        "notifier",
        "loadgen",
        "test-support",
        "drill",
    ] {
        println!("cargo:rerun-if-changed=../{linked}/src");
    }
    println!("cargo:rerun-if-changed=../migrations");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Only paths that exist: cargo reruns a script on every build for a missing one.
        // Not the index: staging does not change what `describe --dirty` compares (the working
        // tree against HEAD), and `describe` itself rewrites the index when it refreshes it, so
        // watching it made every next cargo command rerun this script and rebuild the drill
        // (four times in one CI run).
        for path in ["HEAD", "refs/heads", "packed-refs"] {
            if std::path::Path::new(&dir).join(path).exists() {
                println!("cargo:rerun-if-changed={dir}/{path}");
            }
        }
    }
}
