//! Native inference engines. Knows nothing of HTTP, tenants or routes.

pub mod embed;
pub mod llm;
mod simd;
