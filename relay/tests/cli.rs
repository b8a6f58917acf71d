//! Issue #11.11: secrets given through the environment never reach `--help` or config errors.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const DB_SECRET: &str = "pw-in-the-database-url";
const KAFKA_SECRET: &str = "pw-in-the-kafka-options";

fn run(bin: &str, args: &[&str], kafka_options_var: &str, kafka_options: &str) -> String {
    let mut command = Command::new(bin);
    command.args(args).env_clear();
    let db = format!("postgres://app:{DB_SECRET}@127.0.0.1:1/db");
    command.env("DATABASE_URL", db);
    command.env("REDIS_URL", format!("redis://:{DB_SECRET}@127.0.0.1:1/"));
    command.env(kafka_options_var, kafka_options);
    test_support::output_text(&mut command).0
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(DB_SECRET) && !text.contains(KAFKA_SECRET),
        "{what} shows a secret:\n{text}"
    );
}

#[test]
fn help_and_config_errors_show_no_secrets() {
    let relay = env!("CARGO_BIN_EXE_relay");
    let options = format!("sasl.password={KAFKA_SECRET}");
    let help = run(relay, &["--help"], "RELAY_KAFKA_OPTIONS", &options);
    assert!(help.contains("DATABASE_URL"), "{help}");
    assert_no_secret("relay --help", &help);
    assert_no_secret(
        "relay diag --help",
        &run(relay, &["diag", "--help"], "RELAY_KAFKA_OPTIONS", &options),
    );
    // A malformed option (no '=') is rejected without echoing it.
    let bad = format!("sasl.password{KAFKA_SECRET}");
    let err = run(relay, &[], "RELAY_KAFKA_OPTIONS", &bad);
    assert!(err.contains("key=value"), "{err}");
    assert_no_secret("relay's config error", &err);
}

#[test]
fn the_start_up_log_shows_where_it_connects_without_the_password() {
    let relay = env!("CARGO_BIN_EXE_relay");
    // Nothing listens on port 1: the relay logs its start, fails to connect and exits.
    let out = run(
        relay,
        &[],
        "RELAY_KAFKA_OPTIONS",
        &format!("sasl.password={KAFKA_SECRET}"),
    );
    assert!(out.contains("postgres://app:***@127.0.0.1:1/db"), "{out}");
    assert!(
        out.contains("sasl.password"),
        "option names are shown: {out}"
    );
    assert_no_secret("relay's start-up log and error", &out);
}
