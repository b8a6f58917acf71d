//! Configuration helpers that keep secrets out of terminals and logs (issue #11.11).

/// Parser of repeatable `key=value` options (`--kafka-option`) whose errors name the flag and
/// its environment variable but never quote the value: clap's own message for a failed
/// `value_parser` fn does, and the value may be a `sasl.password`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvParser;

impl clap::builder::TypedValueParser for KvParser {
    type Value = (String, String);

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        parse_kv(value.to_str().unwrap_or_default()).map_err(|m| {
            let name = arg.map_or_else(String::new, |a| {
                let long = a.get_long().map(|l| format!("--{l}"));
                let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
                let names: Vec<String> = long.into_iter().chain(env).collect();
                format!("{}: ", names.join(" / "))
            });
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{name}{m}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// A configuration's `validate()` result as the error a process exits with: "invalid
/// configuration: <what is wrong, naming the variable>".
pub fn valid(checked: Result<(), String>) -> anyhow::Result<()> {
    checked.map_err(|m| anyhow::anyhow!("invalid configuration: {m}"))
}

/// `key=value` → (key, value).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        // The value may be a secret (sasl.password): never echo it.
        .ok_or_else(|| "expected key=value (the value is not shown)".to_string())?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// The URL with the password of its userinfo (`scheme://user:password@host`) replaced by `***`,
/// for logs. Anything that does not look like a URL with userinfo comes back unchanged; a query
/// string is dropped (drivers take `password=` there too).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("postgres://app:s3cr:et@db:5432/app?sslmode=require&password=x"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            redact_url("redis://:pw@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:55432/servicedesk"),
            "postgres://postgres@127.0.0.1:55432/servicedesk"
        );
        assert_eq!(redact_url("http://s3:3900"), "http://s3:3900");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn a_malformed_option_is_not_echoed() {
        let err = parse_kv("sasl.password").unwrap_err();
        assert!(!err.contains("sasl.password"), "{err}");
    }
}
