//! The handler child process and its IPC with the service, both ends together: the
//! `egress run-handler` process that runs egresses ([`handler`]), the service's view of one such
//! process ([`child`]: spawned, connected, its frames routed), and the frames they exchange
//! ([`ipc`]), and the handler's crash reports ([`crash`]).
//!
//! Invariant: the handler never touches Redis; the service never records. `process` stands
//! above `pipeline` (the handler runs recorders) and below `service` (whose launcher spawns
//! children).

pub mod child;
pub mod crash;
pub mod handler;
pub mod ipc;
