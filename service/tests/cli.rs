//! Issue #11.11: connection URLs given through the environment never reach `--help`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_shows_no_connection_secrets() {
    let secret = "pw-not-for-the-terminal";
    let out = Command::new(env!("CARGO_BIN_EXE_service"))
        .arg("--help")
        .env_clear()
        .env("DATABASE_URL", format!("postgres://app:{secret}@db/app"))
        .env("REDIS_URL", format!("redis://:{secret}@cache/"))
        .env("S3_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("DATABASE_URL") && help.contains("REDIS_URL"),
        "{help}"
    );
    assert!(!help.contains(secret), "--help shows a secret:\n{help}");
}
