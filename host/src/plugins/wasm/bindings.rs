//! Host bindings for the `egress:plugin/sink-plugin` world (generated from
//! `plugin-api/wit/egress-plugin.wit`).

wasmtime::component::bindgen!({
    path: "../plugin-api/wit",
    world: "egress:plugin/sink-plugin",
});
