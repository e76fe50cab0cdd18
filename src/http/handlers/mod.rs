//! Thin handlers: parse the request, call an actor handle, build the response.

pub mod admin;
pub mod assets;
pub mod export;
pub mod metrics;
pub mod pages;
pub mod probes;
pub mod timeline;
pub mod vote;
