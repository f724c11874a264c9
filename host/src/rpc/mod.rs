//! psrpc over Redis, wire-compatible with Go's `github.com/livekit/psrpc` (spec:
//! `shared/spec/psrpc-redis.md`).
//!
//! This module knows nothing about egress: it moves protobuf messages between services.
//! * [`channel`]: channel names and their sanitizing.
//! * [`envelope`]: the `internal.Msg` wrapper and the queue lock key.
//! * [`bus`]: the Redis connection(s), subscriptions, reconnection.
//! * [`server`]: bid, claim, handle, respond.
//! * [`client`]: request, select, announce, await.

pub mod bus;
pub mod channel;
pub mod client;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod server;

pub use bus::{Bus, BusError, RedisTarget};
pub use client::{CallOptions, ClientObserver, RpcClient};
pub use error::{Code, RpcError};
pub use server::{
    ClaimOutcome, Method, Registration, RequestContext, Routing, RpcServer, ServerObserver,
};
