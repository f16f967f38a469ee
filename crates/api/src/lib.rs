//! OpenAI-compatible wire types: what goes over HTTP, nothing more.
//!
//! These are data transfer objects. They are parsed strictly (unknown fields
//! are rejected, as OpenAI's own API does) and validated into domain requests
//! elsewhere; this crate does no I/O.

pub mod chat;
pub mod common;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod models;

pub use error::{ErrorBody, ErrorDetail, ErrorKind};
