//! [`export_sink!`]: one line that makes a [`SinkPlugin`](crate::SinkPlugin) loadable by every
//! loader.

/// Export a [`SinkPlugin`](crate::SinkPlugin) (and [`SinkFactory`](crate::SinkFactory))
/// implementation as a plugin.
///
/// ```ignore
/// egress_plugin_api::export_sink!(MySink);
/// ```
///
/// What it expands to depends on how the crate is built, so one source serves all three
/// loaders:
///
/// * **rlib** (always, natively): an `inventory` registration, so that a host binary that links
///   the crate finds the plugin with [`BuiltinSink::iter`](crate::BuiltinSink::iter).
/// * **cdylib** with the plugin crate's `dylib` feature: the C entry symbol
///   `egress_plugin_entry_v1`. The symbol is behind a feature so that several plugins can be
///   linked into one host without clashing; declare `dylib = []` in your `[features]`.
/// * **wasm32-wasip2**: the exports of the `egress:plugin/sink` WIT interface.
///
/// Use it once per crate.
#[macro_export]
macro_rules! export_sink {
    ($factory:ty) => {
        #[cfg(not(target_family = "wasm"))]
        $crate::__private::inventory::submit! {
            $crate::BuiltinSink::of::<$factory>()
        }

        #[cfg(all(feature = "dylib", not(target_family = "wasm")))]
        const _: () = {
            static EGRESS_SINK_API: $crate::abi::EgressSinkApi =
                $crate::abi::export::sink_api::<$factory>();
            static EGRESS_PLUGIN_DESCRIPTOR: $crate::abi::EgressPluginDescriptor =
                $crate::abi::export::descriptor(&EGRESS_SINK_API);

            /// The C entry point (see `egress_plugin.h`).
            #[unsafe(no_mangle)]
            pub extern "C" fn egress_plugin_entry_v1() -> *const $crate::abi::EgressPluginDescriptor
            {
                &EGRESS_PLUGIN_DESCRIPTOR
            }
        };

        #[cfg(target_family = "wasm")]
        const _: () = {
            struct EgressSinkExport;

            impl $crate::wasm::bindings::exports::egress::plugin::sink::Guest for EgressSinkExport {
                type Factory = $crate::wasm::GuestFactory<$factory>;
                type Object = $crate::wasm::GuestObject;

                fn describe() -> $crate::wasm::bindings::egress::plugin::types::Descriptor {
                    $crate::wasm::describe::<$factory>()
                }

                fn validate(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), $crate::wasm::bindings::egress::plugin::types::SinkError>
                {
                    $crate::wasm::validate::<$factory>(&config)
                }
            }

            $crate::wasm::bindings::__wit_export_sink_plugin!(EgressSinkExport with_types_in $crate::wasm::bindings);
        };
    };
}

/// Export a [`RendererPlugin`](crate::RendererPlugin) (and
/// [`LayoutRenderer`](crate::LayoutRenderer)) implementation as a plugin. Since API 1.1.
///
/// ```ignore
/// egress_plugin_api::export_renderer!(MyRenderer);
/// ```
///
/// As [`export_sink!`](crate::export_sink), one source serves every loader:
///
/// * **rlib**: an `inventory` registration ([`BuiltinRenderer::iter`](crate::BuiltinRenderer::iter));
/// * **cdylib** with the crate's `dylib` feature: `egress_plugin_entry_v1`, returning a
///   descriptor with a renderer table and no sink table;
/// * **wasm32-wasip2**: the exports of the `egress:plugin/layout-renderer` interface (world
///   `renderer-plugin`).
///
/// Use it once per crate, and not together with `export_sink!` (both define the C entry).
#[macro_export]
macro_rules! export_renderer {
    ($renderer:ty) => {
        #[cfg(not(target_family = "wasm"))]
        $crate::__private::inventory::submit! {
            $crate::BuiltinRenderer::of::<$renderer>()
        }

        #[cfg(all(feature = "dylib", not(target_family = "wasm")))]
        const _: () = {
            static EGRESS_RENDERER_API: $crate::abi::EgressRendererApi =
                $crate::abi::export::renderer_api::<$renderer>();
            static EGRESS_PLUGIN_DESCRIPTOR: $crate::abi::EgressPluginDescriptor =
                $crate::abi::export::renderer_descriptor(&EGRESS_RENDERER_API);

            /// The C entry point (see `egress_plugin.h`).
            #[unsafe(no_mangle)]
            pub extern "C" fn egress_plugin_entry_v1() -> *const $crate::abi::EgressPluginDescriptor
            {
                &EGRESS_PLUGIN_DESCRIPTOR
            }
        };

        #[cfg(target_family = "wasm")]
        const _: () = {
            struct EgressRendererExport;

            impl $crate::wasm::renderer::bindings::exports::egress::plugin::layout_renderer::Guest
                for EgressRendererExport
            {
                type Renderer = $crate::wasm::renderer::GuestRenderer<$renderer>;

                fn describe() -> $crate::wasm::bindings::egress::plugin::types::Descriptor {
                    $crate::wasm::renderer::describe::<$renderer>()
                }

                fn validate(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), $crate::wasm::bindings::egress::plugin::types::SinkError>
                {
                    $crate::wasm::renderer::validate::<$renderer>(&config)
                }
            }

            $crate::wasm::renderer::bindings::__wit_export_renderer_plugin!(EgressRendererExport with_types_in $crate::wasm::renderer::bindings);
        };
    };
}

/// Export a [`LivePlugin`](crate::LivePlugin) (and [`LiveFactory`](crate::LiveFactory))
/// implementation as a live destination plugin. Since API 1.2.
///
/// ```ignore
/// egress_plugin_api::export_live!(MyDestination);
/// ```
///
/// * **rlib**: an `inventory` registration ([`BuiltinLive::iter`](crate::BuiltinLive::iter));
/// * **cdylib** with the crate's `dylib` feature: `egress_plugin_entry_v1`, returning a
///   descriptor with a live table and neither a sink nor a renderer table;
/// * **wasm32-wasip2**: nothing. A component has no sockets (its only network is the host's
///   allow-listed HTTP import), so a live destination cannot be a WASM plugin; the WIT package
///   has no live interface.
///
/// Use it once per crate, and not together with `export_sink!` or `export_renderer!` (all
/// define the C entry).
#[macro_export]
macro_rules! export_live {
    ($live:ty) => {
        #[cfg(not(target_family = "wasm"))]
        $crate::__private::inventory::submit! {
            $crate::BuiltinLive::of::<$live>()
        }

        #[cfg(all(feature = "dylib", not(target_family = "wasm")))]
        const _: () = {
            static EGRESS_LIVE_API: $crate::abi::EgressLiveApi =
                $crate::abi::export::live_api::<$live>();
            static EGRESS_PLUGIN_DESCRIPTOR: $crate::abi::EgressPluginDescriptor =
                $crate::abi::export::live_descriptor(&EGRESS_LIVE_API);

            /// The C entry point (see `egress_plugin.h`).
            #[unsafe(no_mangle)]
            pub extern "C" fn egress_plugin_entry_v1() -> *const $crate::abi::EgressPluginDescriptor
            {
                &EGRESS_PLUGIN_DESCRIPTOR
            }
        };
    };
}
