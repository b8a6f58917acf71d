//! Kafka client settings every producer and consumer shares (issue #12.2: each binary built its
//! own, and one of them ignored the operator's `--kafka-option`s).

use rdkafka::ClientConfig;

/// The local stack's broker (`infra/local/stack`); `--kafka-brokers` elsewhere.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:19092";

/// `bootstrap.servers`, then the client's own settings, then the operator's passthrough
/// options (`--kafka-option k=v`: TLS, SASL, tuning), which win over both.
pub fn client_config(
    brokers: &str,
    own: &[(&str, String)],
    options: &[(String, String)],
) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (k, v) in own {
        client.set(*k, v);
    }
    for (k, v) in options {
        client.set(k, v);
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_options_win() {
        let c = client_config(
            "b:9092",
            &[("acks", "all".into()), ("linger.ms", "5".into())],
            &[("linger.ms".into(), "50".into())],
        );
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("50"));
    }
}
