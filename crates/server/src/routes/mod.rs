//! HTTP routes. Handlers parse, call the service, and shape the answer.

pub mod admin;
pub mod embeddings;
pub mod openai;
pub mod ops;
pub mod tenancy;
