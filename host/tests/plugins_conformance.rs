//! The conformance kit through every loader (see `plugins/conformance.rs`).

#[path = "plugins/conformance.rs"]
mod conformance;
#[path = "plugins/support.rs"]
mod support;
