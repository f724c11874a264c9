//! 1 GiB through the dylib and WASM loaders (see `plugins/gib.rs`).

#[path = "plugins/gib.rs"]
mod gib;
#[path = "plugins/http.rs"]
mod http;
#[path = "plugins/support.rs"]
mod support;
