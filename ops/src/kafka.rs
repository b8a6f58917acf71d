//! Kafka client settings every producer and consumer shares (issue #12.2: each binary built its
//! own, and one of them ignored the operator's `--kafka-option`s).

use rdkafka::ClientConfig;

/// The local stack's broker (`infra/local/stack`); `--kafka-brokers` elsewhere.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:19092";

/// What every client of the system sets, whatever its role: a dead broker is retried at most
/// every second (librdkafka's default backs off to 10 s, and a consumer or producer whose
/// leader moved back to a restarted node, or whose coordinator was there, waited that long).
const SHARED: &[(&str, &str)] = &[("reconnect.backoff.max.ms", "1000")];

/// `bootstrap.servers` and the shared settings, then the client's own settings, then the
/// operator's passthrough options (`--kafka-option k=v`: TLS, SASL, tuning), which win over all.
pub fn client_config(
    brokers: &str,
    own: &[(&str, String)],
    options: &[(String, String)],
) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (k, v) in SHARED {
        client.set(*k, *v);
    }
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
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("1000"));
    }
}
