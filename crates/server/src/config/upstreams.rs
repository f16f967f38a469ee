//! The `upstreams` and `routes` sections: OpenAI-compatible providers
//! (the gateway's deployments) and the model ids that reach them.
//!
//! ```yaml
//! upstreams:
//!   - name: openai
//!     base_url: https://api.openai.com/v1
//!     api_key: env:OPENAI_API_KEY
//!     model: gpt-4o-mini
//!   - name: local-vllm
//!     base_url: http://vllm:8000/v1
//!     replicas: [http://vllm-2:8000/v1]
//! routes:
//!   - id: gpt-4o-mini            # what clients put in `model`
//!     deployments: [openai, local-vllm]   # tried in order (fallback)
//!   - id: chat                   # an alias of a native model, with an
//!     deployments: [qwen2.5-0.5b-instruct, openai]   # upstream behind it
//! ```
//! A route's deployment is an upstream's `name` or a native model's `id`.
//! A deployment no route names is called by its own name.

use serde::{Deserialize, Serialize};
pub use switchyard_gateway::DeploymentConfig;

use super::{invalid, Config, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The model id clients call.
    pub id: String,
    /// Deployments in fallback order: upstream names or native model ids.
    pub deployments: Vec<String>,
}

/// The names clients can call on upstreams: route ids, and deployments no
/// route names.
pub fn upstream_ids(cfg: &Config) -> Vec<&str> {
    let mut ids: Vec<&str> = cfg.routes.iter().map(|r| r.id.as_str()).collect();
    for d in &cfg.upstreams {
        let routed = cfg.routes.iter().any(|r| r.deployments.contains(&d.name));
        if !routed && !ids.contains(&d.name.as_str()) {
            ids.push(&d.name);
        }
    }
    ids
}

pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    for (i, d) in cfg.upstreams.iter().enumerate() {
        d.validate()
            .map_err(|e| invalid(&format!("upstreams[{i}].{}", e.field), e.message))?;
        if cfg.upstreams[..i].iter().any(|o| o.name == d.name) {
            return Err(invalid(
                &format!("upstreams[{i}].name"),
                format!("{:?} is listed twice", d.name),
            ));
        }
        if cfg.models.iter().any(|m| m.id == d.name) {
            return Err(invalid(
                &format!("upstreams[{i}].name"),
                format!(
                    "{:?} is also a native model's id; a route could not tell them apart",
                    d.name
                ),
            ));
        }
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.id.is_empty() || r.id.len() > 128 || r.id.contains(':') {
            return Err(invalid(&format!("{at}.id"), "must be 1 to 128 characters, without `:`"));
        }
        if cfg.routes[..i].iter().any(|o| o.id == r.id) {
            return Err(invalid(&format!("{at}.id"), format!("{:?} is listed twice", r.id)));
        }
        if r.deployments.is_empty() {
            return Err(invalid(
                &format!("{at}.deployments"),
                "name at least one upstream or model",
            ));
        }
        let known = |n: &String| cfg.upstreams.iter().any(|d| &d.name == n) || cfg.models.iter().any(|m| &m.id == n);
        if let Some(missing) = r.deployments.iter().find(|n| !known(n)) {
            return Err(invalid(
                &format!("{at}.deployments"),
                format!("{missing:?} is neither among `upstreams` nor among `models`"),
            ));
        }
        if let Some(twice) = r
            .deployments
            .iter()
            .enumerate()
            .find(|(j, n)| r.deployments[..*j].contains(n))
        {
            return Err(invalid(
                &format!("{at}.deployments"),
                format!("{:?} is listed twice", twice.1),
            ));
        }
    }
    for id in upstream_ids(cfg) {
        if cfg.models.iter().any(|m| m.id == id) {
            return Err(invalid(
                "routes",
                format!("{id:?} names both an upstream route and a native model"),
            ));
        }
    }
    Ok(())
}
