//! stub
pub mod rollout;
