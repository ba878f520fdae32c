//! stub
pub mod hostile;
