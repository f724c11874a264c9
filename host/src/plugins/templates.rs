//! `templates`: the compiled-in layout renderer for the bundled room-composite layouts
//! (`templates/`, served on `template_port`). It answers each of them with the service's
//! template base URL carrying `layout`; the host then adds the recorder's `url` and `token`
//! (`crate::pipeline::config`), as for any renderer's page. That is the Go egress's template
//! URL, unchanged.

use egress_plugin_api::{
    BuiltinRenderer, Descriptor, LayoutRenderer, RenderRequest, RendererPlugin, Rendering,
    RoomState, SinkError, Value, async_trait, json,
};

/// The bundled layouts, as `egress validate` lists them. The app draws by prefix (`speaker…`,
/// `single-speaker…`, else grid) and a light theme for `-light`, so the `-dark` names the Go
/// templates know work as well, and so does any other name (drawn as grid, as in Go): the
/// registry hands layouts no renderer claims to this one.
pub const LAYOUTS: [&str; 9] = [
    "grid",
    "grid-dark",
    "grid-light",
    "speaker",
    "speaker-dark",
    "speaker-light",
    "single-speaker",
    "single-speaker-dark",
    "single-speaker-light",
];

/// The plugin name configs use (`- builtin: templates`).
pub const NAME: &str = "templates";

/// The renderer; it has no settings.
pub struct Templates;

/// Its registration, listed with the `inventory` ones by [`super::builtin`].
pub static TEMPLATES: BuiltinRenderer = BuiltinRenderer::of::<Templates>();

impl RendererPlugin for Templates {
    fn describe() -> Descriptor {
        Descriptor::new(NAME, env!("CARGO_PKG_VERSION")).with_config_schema(json!({
            "type": "object",
            "additionalProperties": false
        }))
    }

    fn create(config: &Value) -> Result<Self, SinkError> {
        match config {
            Value::Null => Ok(Templates),
            Value::Object(map) if map.is_empty() => Ok(Templates),
            _ => Err(SinkError::config(
                "the templates renderer has no settings (it serves template_base)",
            )),
        }
    }
}

#[async_trait]
impl LayoutRenderer for Templates {
    fn layouts(&self) -> Vec<String> {
        LAYOUTS.iter().map(|l| (*l).to_string()).collect()
    }

    async fn render(
        &self,
        request: &RenderRequest,
        _room: &RoomState,
    ) -> Result<Rendering, SinkError> {
        // Any layout is passed through as Go does: the empty one is the template's default
        // (grid), and the page draws other names by prefix (see `LAYOUTS`).
        let base = url::Url::parse(&request.template_base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| SinkError::config_field("template_base", "must be an http(s) URL"))?;
        Ok(Rendering::PageUrl(with_layout(&base, &request.layout)))
    }
}

/// `base` with its `layout` query parameter set (others kept).
fn with_layout(base: &url::Url, layout: &str) -> String {
    let mut pairs: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(k, _)| k != "layout")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.push(("layout".into(), layout.into()));
    let mut u = base.clone();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_plugin_api::blocking::block_on;

    #[test]
    fn bundled_layouts_get_the_template_base() {
        let room = RoomState::new("r", vec![]);
        let req = RenderRequest::new("speaker-light", 1280, 720)
            .with_template_base("http://localhost:7980/?a=1&layout=x");
        let Ok(Rendering::PageUrl(url)) = block_on(Templates.render(&req, &room)) else {
            panic!("a page");
        };
        assert_eq!(url, "http://localhost:7980/?a=1&layout=speaker-light");
        // Any other name is passed to the page as Go does (it draws it as grid) ...
        let other = RenderRequest::new("pip", 1, 1).with_template_base("http://localhost:7980/");
        let Ok(Rendering::PageUrl(url)) = block_on(Templates.render(&other, &room)) else {
            panic!("a page");
        };
        assert_eq!(url, "http://localhost:7980/?layout=pip");
        // ... but a template base that is no web page is an error naming it.
        let e = block_on(Templates.render(
            &RenderRequest::new("grid", 1, 1).with_template_base("file:///x"),
            &room,
        ))
        .unwrap_err();
        assert_eq!(e.field(), Some("template_base"));
    }
}
