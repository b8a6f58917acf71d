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

#[test]
fn the_start_up_log_shows_where_it_connects_without_the_password() {
    let secret = "pw-not-for-the-log";
    // Nothing listens on port 1: the service logs its start, fails to connect and exits.
    let mut service = Command::new(env!("CARGO_BIN_EXE_service"));
    service
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://app:{secret}@127.0.0.1:1/app"),
        )
        .env("REDIS_URL", format!("redis://:{secret}@127.0.0.1:1/"))
        .env("LISTEN_ADDR", "127.0.0.1:0");
    let (text, success) = test_support::output_text(&mut service);
    assert!(!success, "{text}");
    assert!(
        text.contains("postgres://app:***@127.0.0.1:1/app"),
        "{text}"
    );
    assert!(text.contains("redis://:***@127.0.0.1:1/"), "{text}");
    assert!(
        !text.contains(secret),
        "a password reached the output:\n{text}"
    );
}
