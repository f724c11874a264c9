//! The psrpc methods the egress serves and calls, with the routing the Go generator gives them
//! (spec §3.2–3.4).

use crate::rpc::{Method, Routing};

pub const START_EGRESS: Method = Method {
    service: "EgressInternal",
    name: "StartEgress",
    routing: Routing::Affinity,
};
pub const LIST_ACTIVE_EGRESS: Method = Method {
    service: "EgressInternal",
    name: "ListActiveEgress",
    routing: Routing::Multi,
};
pub const STOP_EGRESS: Method = Method {
    service: "EgressHandler",
    name: "StopEgress",
    routing: Routing::Queue,
};
pub const UPDATE_STREAM: Method = Method {
    service: "EgressHandler",
    name: "UpdateStream",
    routing: Routing::Queue,
};
pub const IO_CREATE_EGRESS: Method = Method {
    service: "IOInfo",
    name: "CreateEgress",
    routing: Routing::Queue,
};
pub const IO_UPDATE_EGRESS: Method = Method {
    service: "IOInfo",
    name: "UpdateEgress",
    routing: Routing::Queue,
};
