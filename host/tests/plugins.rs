//! The plugin boundary end to end, loaded by config alone: start-up errors, a C plugin, the
//! sandbox, failures mid-upload, layout renderers through every loader. The conformance matrix and the 1 GiB streams measure memory,
//! so they are separate binaries with one test each (`plugins_conformance.rs`,
//! `plugins_stream.rs`). Dylib and WASM artifacts are built by the tests (`plugins/support.rs`);
//! the WASM ones need `rustup target add wasm32-wasip2`.

#[path = "plugins/http.rs"]
mod http;
#[path = "plugins/live.rs"]
mod live;
#[path = "plugins/loading.rs"]
mod loading;
#[path = "plugins/renderers.rs"]
mod renderers;
#[path = "plugins/sandbox.rs"]
mod sandbox;
#[path = "plugins/stream.rs"]
mod stream;
#[path = "plugins/support.rs"]
mod support;
