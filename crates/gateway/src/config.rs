//! Configuration of one upstream deployment, with defaults and validation.
//!
//! Every struct rejects unknown keys; every knob has a compiled default so a
//! deployment needs only `name` and `base_url`. [`DeploymentConfig::validate`]
//! returns errors that name the offending field.

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// One upstream OpenAI-compatible provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The deployment's name, as routes refer to it and as results report it.
    pub name: String,
    /// OpenAI-compatible base, e.g. `http://127.0.0.1:8000/v1`; request
    /// paths such as `/chat/completions` are appended to it.
    pub base_url: String,
    /// More base URLs serving the same model; requests are balanced over
    /// `base_url` and these by least outstanding requests.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// Extra headers sent on every request (e.g. `OpenAI-Organization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The upstream's name for the model; defaults to `name`.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    #[serde(default)]
    pub retries: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// Time limits for one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// TCP (and TLS) connection set-up.
    pub connect_ms: u64,
    /// From sending an attempt to its first byte: the response head, and for
    /// streams also the first body chunk. A non-streaming completion sends its
    /// head only when generation is done, so this bounds generation too.
    pub first_byte_ms: u64,
    /// The whole call: every attempt, backoff, and the streamed body.
    pub total_ms: u64,
    /// The longest silence between two chunks of a stream after its first.
    pub stream_idle_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect_ms: 2_000,
            first_byte_ms: 60_000,
            total_ms: 600_000,
            stream_idle_ms: 60_000,
        }
    }
}

/// Retries before the first byte reaches the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// The first backoff's ceiling; doubled on each retry.
    pub backoff_base_ms: u64,
    /// The backoff ceiling never grows past this; also caps `Retry-After`.
    pub backoff_max_ms: u64,
    /// Full jitter: sleep a uniform random time in `[0, ceiling]`. Without it
    /// the sleep is the ceiling itself.
    pub jitter: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
            jitter: true,
        }
    }
}

/// The circuit breaker of each endpoint (replica).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// Open after this many consecutive failures.
    pub failure_threshold: u32,
    /// Also open when the failure rate over `window_ms` reaches this (0..=1),
    /// once the window holds at least `min_requests` outcomes. Off when unset.
    pub failure_rate: Option<f64>,
    pub window_ms: u64,
    pub min_requests: u32,
    /// How long an open breaker refuses calls before it lets probes through.
    pub open_ms: u64,
    /// How many requests a half-open breaker lets through at once.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
            failure_rate: None,
            window_ms: 10_000,
            min_requests: 20,
            open_ms: 10_000,
            half_open_probes: 1,
        }
    }
}

impl DeploymentConfig {
    /// A deployment with every default, for code and tests.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            replicas: Vec::new(),
            api_key: None,
            headers: BTreeMap::new(),
            model: None,
            timeouts: TimeoutConfig::default(),
            retries: RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }

    /// The model name sent upstream.
    pub fn upstream_model(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.name)
    }

    /// Checks every field; the first error names it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, message: &str| ConfigError {
            scope: format!("deployment `{}`", self.name),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty"));
        }
        check_url(&self.base_url).map_err(|m| err("base_url", &m))?;
        for (i, url) in self.replicas.iter().enumerate() {
            check_url(url).map_err(|m| err(&format!("replicas[{i}]"), &m))?;
        }
        if self.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(err("model", "must not be empty when set"));
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| err(&field, "is not a valid header name"))?;
            HeaderValue::from_str(value).map_err(|_| err(&field, "is not a valid header value"))?;
        }
        let t = &self.timeouts;
        for (field, v) in [
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.first_byte_ms", t.first_byte_ms),
            ("timeouts.total_ms", t.total_ms),
            ("timeouts.stream_idle_ms", t.stream_idle_ms),
        ] {
            if v == 0 {
                return Err(err(field, "must be greater than 0"));
            }
        }
        if t.total_ms < t.first_byte_ms {
            return Err(err("timeouts.total_ms", "must be at least first_byte_ms"));
        }
        let r = &self.retries;
        if r.backoff_base_ms == 0 {
            return Err(err("retries.backoff_base_ms", "must be greater than 0"));
        }
        if r.backoff_max_ms < r.backoff_base_ms {
            return Err(err("retries.backoff_max_ms", "must be at least backoff_base_ms"));
        }
        let b = &self.breaker;
        if b.failure_threshold == 0 {
            return Err(err("breaker.failure_threshold", "must be at least 1"));
        }
        if let Some(rate) = b.failure_rate {
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(err("breaker.failure_rate", "must be in (0, 1]"));
            }
        }
        if b.window_ms == 0 {
            return Err(err("breaker.window_ms", "must be greater than 0"));
        }
        if b.min_requests == 0 {
            return Err(err("breaker.min_requests", "must be at least 1"));
        }
        if b.open_ms == 0 {
            return Err(err("breaker.open_ms", "must be greater than 0"));
        }
        if b.half_open_probes == 0 {
            return Err(err("breaker.half_open_probes", "must be at least 1"));
        }
        Ok(())
    }
}

impl TimeoutConfig {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn first_byte(&self) -> Duration {
        Duration::from_millis(self.first_byte_ms)
    }
    pub fn total(&self) -> Duration {
        Duration::from_millis(self.total_ms)
    }
    pub fn stream_idle(&self) -> Duration {
        Duration::from_millis(self.stream_idle_ms)
    }
}

fn check_url(raw: &str) -> Result<(), String> {
    let uri: http::Uri = raw.parse().map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must be http:// or https://".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("is not a URL: it has no host".into());
    }
    if uri.query().is_some() || raw.contains('#') {
        return Err("must not have a query or fragment".into());
    }
    Ok(())
}

/// A configuration error naming where (``deployment `a` ``, ``route `chat` ``)
/// and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scope}: {field}: {message}")]
pub struct ConfigError {
    pub scope: String,
    pub field: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(cfg: &DeploymentConfig) -> String {
        cfg.validate().unwrap_err().field
    }

    #[test]
    fn defaults_validate() {
        let cfg = DeploymentConfig::new("gpt", "http://127.0.0.1:8000/v1");
        cfg.validate().unwrap();
        assert_eq!(cfg.upstream_model(), "gpt");
    }

    #[test]
    fn minimal_yaml_like_json_gets_defaults() {
        let cfg: DeploymentConfig = serde_json::from_str(
            r#"{"name":"a","base_url":"https://api.example.com/v1","api_key":"env:KEY",
                "model":"gpt-4o-mini","retries":{"max_retries":4}}"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.retries.max_retries, 4);
        assert_eq!(cfg.retries.backoff_base_ms, 100);
        assert_eq!(cfg.upstream_model(), "gpt-4o-mini");
        assert_eq!(format!("{:?}", cfg.api_key), "Some(env:KEY)");
    }

    #[test]
    fn unknown_keys_and_literal_keys_are_rejected() {
        let unknown = r#"{"name":"a","base_url":"http://x/v1","timeouts":{"conect_ms":1}}"#;
        assert!(serde_json::from_str::<DeploymentConfig>(unknown).is_err());
        let literal = r#"{"name":"a","base_url":"http://x/v1","api_key":"sk-123"}"#;
        assert!(serde_json::from_str::<DeploymentConfig>(literal).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let base = DeploymentConfig::new("gpt", "http://127.0.0.1:8000/v1");
        let mut c = base.clone();
        c.base_url = "ftp://x".into();
        assert_eq!(field_of(&c), "base_url");
        let mut c = base.clone();
        c.replicas = vec!["http://ok/v1".into(), "nope".into()];
        assert_eq!(field_of(&c), "replicas[1]");
        let mut c = base.clone();
        c.headers.insert("bad header".into(), "v".into());
        assert_eq!(field_of(&c), "headers.bad header");
        let mut c = base.clone();
        c.timeouts.first_byte_ms = 0;
        assert_eq!(field_of(&c), "timeouts.first_byte_ms");
        let mut c = base.clone();
        c.timeouts.total_ms = 10;
        assert_eq!(field_of(&c), "timeouts.total_ms");
        let mut c = base.clone();
        c.retries.backoff_max_ms = 1;
        assert_eq!(field_of(&c), "retries.backoff_max_ms");
        let mut c = base.clone();
        c.breaker.failure_rate = Some(1.5);
        assert_eq!(field_of(&c), "breaker.failure_rate");
        let mut c = base.clone();
        c.breaker.half_open_probes = 0;
        assert_eq!(field_of(&c), "breaker.half_open_probes");
        let mut c = base;
        c.name = " ".into();
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "name");
        assert_eq!(e.to_string(), "deployment ` `: name: must not be empty");
    }
}
