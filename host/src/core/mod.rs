//! The ground floor of the host: the vocabulary every layer speaks, with no I/O. What kind of
//! egress a request is ([`request`]), the Go egress's error texts and codes ([`errors`],
//! [`pipeline_error`]), the STARTING info ([`info`]) and the status helpers ([`status`]).
//!
//! Invariant: `core` imports nothing of the host but `config` and `rpc` (its error type).

pub mod errors;
pub mod info;
pub mod pipeline_error;
pub mod request;
pub mod status;

pub use pipeline_error::PipelineError;
pub use request::{Classified, RequestType};
