//! The one trait every deployment answers through: an upstream provider
//! ([`Deployment`](crate::Deployment)) or a model this process serves itself
//! (implemented by the server, which owns the native engines). A [`Route`]
//! (crate::Route) is a chain of backends, so aliases and fallbacks work
//! the same whichever kind answers.

use futures::future::BoxFuture;

use crate::deployment::Deployment;
use crate::error::GatewayError;
use crate::request::{UpstreamRequest, UpstreamResponse};

/// Something that answers OpenAI-compatible requests.
///
/// `call` gives the answer the caller must see (a 2xx, or a 4xx that is the
/// caller's fault) or an error; an error that [allows
/// fallback](GatewayError::allows_fallback) sends a route on to its next
/// backend. Attempts (network tries, or one per native call) are added to
/// `attempts`, and usage is reported only by the answer that is returned:
/// in [`UpstreamBody::Full`](crate::UpstreamBody) or the stream's summary.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The deployment name, as routes and usage records name it.
    fn name(&self) -> &str;

    /// `"upstream"` or `"native"`, for the admin API.
    fn kind(&self) -> &'static str;

    /// The model name this backend is called with (the upstream's, or the
    /// native model's id).
    fn model(&self) -> &str;

    fn call<'a>(
        &'a self,
        req: &'a UpstreamRequest,
        attempts: &'a mut u32,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>>;
}

impl Backend for Deployment {
    fn name(&self) -> &str {
        Deployment::name(self)
    }

    fn kind(&self) -> &'static str {
        "upstream"
    }

    fn model(&self) -> &str {
        self.upstream_model()
    }

    fn call<'a>(
        &'a self,
        req: &'a UpstreamRequest,
        attempts: &'a mut u32,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>> {
        Box::pin(self.call_counting(req, attempts))
    }
}
