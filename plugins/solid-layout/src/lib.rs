//! `solid-layout`: the example layout renderer. It answers the layouts `solid-red`,
//! `solid-green` and `solid-blue` with the page at its configured `url`, asking for that colour
//! (`?color=ff0000`); the page is the operator's (the end-to-end tests serve one that fills the
//! window with `color`). The same source builds as an rlib, a cdylib (feature `dylib`) and a
//! wasm32-wasip2 component, through `export_renderer!`.
//!
//! Two config switches exist for the host's loader tests only: `panic_in` (`create` or
//! `render`) and `spin_in_render` (to hit a WASM time limit).

use egress_plugin_api::{
    Descriptor, LayoutRenderer, RenderRequest, RendererPlugin, Rendering, RoomState, SinkError,
    Value, async_trait, config, export_renderer, json,
};
use serde::Deserialize;

/// The layouts and the colour each asks the page for.
const LAYOUTS: [(&str, &str); 3] = [
    ("solid-red", "ff0000"),
    ("solid-green", "00ff00"),
    ("solid-blue", "0000ff"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The page to load: an http(s) URL, to which `color=<hex>` is appended.
    url: String,
    /// Test switch: panic in `create` or `render`.
    #[serde(default)]
    panic_in: Option<String>,
    /// Test switch: never return from `render`.
    #[serde(default)]
    spin_in_render: bool,
}

pub struct SolidLayout {
    config: Config,
}

impl RendererPlugin for SolidLayout {
    fn describe() -> Descriptor {
        Descriptor::new("solid-layout", env!("CARGO_PKG_VERSION")).with_config_schema(json!({
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": { "type": "string", "format": "uri" },
                "panic_in": { "type": "string", "enum": ["create", "render"] },
                "spin_in_render": { "type": "boolean" }
            },
            "additionalProperties": false
        }))
    }

    fn create(value: &Value) -> Result<Self, SinkError> {
        let config: Config = config::parse(value)?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(SinkError::config_field(
                "url",
                "must be an http:// or https:// URL",
            ));
        }
        if config.panic_in.as_deref() == Some("create") {
            panic!("solid-layout: panic in create, as configured");
        }
        Ok(SolidLayout { config })
    }
}

#[async_trait]
impl LayoutRenderer for SolidLayout {
    fn layouts(&self) -> Vec<String> {
        LAYOUTS
            .iter()
            .map(|(name, _)| (*name).to_string())
            .collect()
    }

    async fn render(
        &self,
        request: &RenderRequest,
        _room: &RoomState,
    ) -> Result<Rendering, SinkError> {
        if self.config.panic_in.as_deref() == Some("render") {
            panic!("solid-layout: panic in render, as configured");
        }
        if self.config.spin_in_render {
            // Keep the loop observable so that the optimiser cannot remove it.
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        let (_, colour) = LAYOUTS
            .iter()
            .find(|(name, _)| *name == request.layout)
            .ok_or_else(|| {
                SinkError::config_field(
                    "layout",
                    format!("solid-layout has no layout {:?}", request.layout),
                )
            })?;
        let sep = if self.config.url.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(Rendering::PageUrl(format!(
            "{}{sep}color={colour}",
            self.config.url
        )))
    }
}

export_renderer!(SolidLayout);

#[cfg(test)]
mod tests {
    use super::*;
    use egress_plugin_api::blocking::block_on;

    #[test]
    fn answers_its_layouts_with_the_colour() {
        let r = SolidLayout::create(&json!({ "url": "http://127.0.0.1:9/page" })).unwrap();
        let room = RoomState::new("r", vec![]);
        let out = block_on(r.render(&RenderRequest::new("solid-red", 1280, 720), &room));
        assert_eq!(
            out.unwrap(),
            Rendering::PageUrl("http://127.0.0.1:9/page?color=ff0000".into())
        );
        let e = block_on(r.render(&RenderRequest::new("grid", 1280, 720), &room)).unwrap_err();
        assert!(e.is_config() && e.field() == Some("layout"), "{e}");
        let e = SolidLayout::create(&json!({ "url": "ftp://x" }))
            .err()
            .unwrap();
        assert_eq!(e.field(), Some("url"));
    }
}
