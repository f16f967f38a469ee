//! The scripted upstream lives in `switchyard_gateway::testing`.
#![allow(unused_imports)]
pub use switchyard_gateway::testing::*;
