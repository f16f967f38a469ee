//! A fallback chain: deployments tried in order.

use std::sync::Arc;

use crate::backend::Backend;
use crate::config::ConfigError;
use crate::error::GatewayError;
use crate::request::{UpstreamRequest, UpstreamResponse};

/// An ordered list of deployments (upstream or native backends). The next
/// one is tried when one fails after its own retries, refuses because every
/// breaker it has is open, or (native) cannot take the call now. An answer
/// the caller must see (any 2xx or 4xx) ends the chain. A route of one
/// deployment is an alias.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    deployments: Vec<Arc<dyn Backend>>,
}

impl Route {
    /// A route needs at least one deployment.
    pub fn new(name: impl Into<String>, deployments: Vec<Arc<dyn Backend>>) -> Result<Self, ConfigError> {
        let name = name.into();
        if deployments.is_empty() {
            return Err(ConfigError {
                scope: format!("route `{name}`"),
                field: "deployments".into(),
                message: "must list at least one deployment".into(),
            });
        }
        Ok(Self { name, deployments })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn deployments(&self) -> &[Arc<dyn Backend>] {
        &self.deployments
    }

    /// The first answer along the chain. The response names the deployment
    /// that answered and counts attempts over all of them; when every one
    /// failed, [`GatewayError::AllFailed`] carries the last failure.
    pub async fn call(&self, req: &UpstreamRequest) -> Result<UpstreamResponse, GatewayError> {
        let mut attempts = 0;
        let mut last = None;
        for (tried, deployment) in self.deployments.iter().enumerate() {
            match deployment.call(req, &mut attempts).await {
                Ok(response) => return Ok(response),
                Err(error) if !error.allows_fallback() => return Err(error),
                Err(error) => {
                    tracing::info!(route = %self.name, deployment = deployment.name(), %error, "falling back");
                    last = Some((tried + 1, error));
                }
            }
        }
        let (tried, last) = last.unwrap_or_else(|| {
            // Unreachable: `new` refuses an empty route.
            let refused = GatewayError::BreakerOpen {
                deployment: self.name.clone(),
                retry_after: std::time::Duration::ZERO,
            };
            (0, refused)
        });
        Err(GatewayError::AllFailed {
            tried,
            attempts,
            last: Box::new(last),
        })
    }
}
