//! Host bindings for the `egress:plugin/sink-plugin` world and (module [`renderer`]) the
//! `egress:plugin/renderer-plugin` world, generated from `plugin-api/wit/egress-plugin.wit`.

wasmtime::component::bindgen!({
    path: "../plugin-api/wit",
    world: "egress:plugin/sink-plugin",
});

pub mod renderer {
    //! The renderer world, sharing the sink world's `types` and `log` (one host
    //! implementation of each).
    wasmtime::component::bindgen!({
        path: "../plugin-api/wit",
        world: "egress:plugin/renderer-plugin",
        with: {
            "egress:plugin/types": crate::plugins::wasm::bindings::egress::plugin::types,
            "egress:plugin/log": crate::plugins::wasm::bindings::egress::plugin::log,
        },
    });
}
