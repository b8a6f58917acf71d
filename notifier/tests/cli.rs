//! Issue #11.11: secrets given through the environment never reach `--help` or config errors.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const SECRET: &str = "pw-not-for-the-terminal";

fn run(args: &[&str], kafka_options: &str) -> String {
    let mut notifier = Command::new(env!("CARGO_BIN_EXE_notifier"));
    notifier.args(args).env_clear();
    let db = format!("postgres://app:{SECRET}@127.0.0.1:1/db");
    notifier.env("DATABASE_URL", db);
    notifier.env("NOTIFIER_KAFKA_OPTIONS", kafka_options);
    test_support::output_text(&mut notifier).0
}

#[test]
fn help_and_config_errors_show_no_secrets() {
    let help = run(&["--help"], &format!("sasl.password={SECRET}"));
    assert!(help.contains("NOTIFIER_KAFKA_OPTIONS"), "{help}");
    assert!(!help.contains(SECRET), "--help shows a secret:\n{help}");
    let err = run(&[], &format!("sasl.password{SECRET}"));
    assert!(err.contains("key=value"), "{err}");
    assert!(
        !err.contains(SECRET),
        "the config error shows a secret:\n{err}"
    );
}

#[test]
fn the_start_up_log_shows_where_it_connects_without_the_password() {
    // Nothing listens on port 1: the notifier logs its start, fails to connect and exits.
    let out = run(&[], &format!("sasl.password={SECRET}"));
    assert!(out.contains("postgres://app:***@127.0.0.1:1/db"), "{out}");
    assert!(
        !out.contains(SECRET),
        "the start-up log or error shows a secret:\n{out}"
    );
}
