//! The egress host as a library, so that the `egress` binary stays thin and end-to-end tests
//! can speak psrpc to a running worker. See ARCHITECTURE.md for the map.

pub mod config;
pub mod core;
pub mod outputs;
pub mod pipeline;
pub mod plugins;
pub mod process;
pub mod rpc;
pub mod service;
pub mod storage;
pub mod webrtc;
