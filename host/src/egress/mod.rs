//! Egress-specific logic on top of the generic [`crate::rpc`] transport: which methods exist,
//! what a request costs, whether this worker bids, the Go egress's error texts, and the IOInfo
//! status reporter.

pub mod ioinfo;
pub mod launcher;
pub mod methods;
pub mod server;
pub mod worker;
