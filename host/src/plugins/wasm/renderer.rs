//! WASM layout renderers: components targeting `egress:plugin/renderer-plugin@1.x`.
//!
//! Every call (describe, validate, create + layouts, render) runs in a fresh instance, in a
//! store with the plugin's sandbox (memory cap, per-call time limit, no ambient authority), on
//! a thread of its own. A renderer keeps no state between calls by contract, and renders are
//! rare (once per egress), so an instance per call costs little and a trap poisons nothing.

use std::sync::Arc;

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{
    ApiVersion, Descriptor, LayoutRenderer, LoadedRenderer, Participant, RenderRequest, Rendering,
    RoomState, SinkError, Tile, TrackKind, Value, async_trait,
};
use wasmtime::Store;

use super::bindings::renderer::exports::egress::plugin::layout_renderer as wit;
use super::bindings::renderer::{RendererPlugin, RendererPluginPre};
use super::session::from_wit;
use super::store::{Sandbox, StoreState, new_store, timed};
use super::{DescribeError, descriptor_from_wit, off_thread};
use crate::plugins::worker_errors::{gone, no_thread};

/// A compiled renderer component, linked and ready to instantiate, with its sandbox.
pub struct RendererComponent {
    pub(super) engine: &'static wasmtime::Engine,
    pub(super) pre: RendererPluginPre<StoreState>,
    pub(super) sandbox: Sandbox,
}

/// A loaded WASM renderer plugin.
pub struct WasmRenderer {
    component: Arc<RendererComponent>,
    descriptor: Descriptor,
}

fn instantiate(
    component: &RendererComponent,
) -> Result<(Store<StoreState>, RendererPlugin), SinkError> {
    let mut store = new_store(component.engine, &component.sandbox)?;
    let bindings = timed(&mut store, |s| component.pre.instantiate(s))?;
    Ok((store, bindings))
}

impl WasmRenderer {
    /// Describe the component (in an instance of its own) and check its API version.
    pub(super) fn new(mut component: RendererComponent) -> Result<Self, DescribeError> {
        let descriptor = off_thread(|| {
            let (mut store, bindings) = instantiate(&component)?;
            let d = timed(&mut store, |s| {
                bindings.egress_plugin_layout_renderer().call_describe(s)
            })?;
            let api = ApiVersion::new(d.api_major, d.api_minor);
            ApiVersion::check_plugin(ApiVersion::CURRENT, api).map_err(DescribeError::Version)?;
            descriptor_from_wit(d)
        })?;
        component.sandbox.plugin = descriptor.name.clone();
        Ok(WasmRenderer {
            component: Arc::new(component),
            descriptor,
        })
    }
}

impl LoadedRenderer for WasmRenderer {
    fn descriptor(&self) -> Descriptor {
        self.descriptor.clone()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        let json = config_json(config)?;
        let component = &self.component;
        off_thread(|| {
            let (mut store, bindings) = instantiate(component)?;
            timed(&mut store, |s| {
                bindings
                    .egress_plugin_layout_renderer()
                    .call_validate(s, &json)
            })?
            .map_err(from_wit)
        })
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LayoutRenderer>, SinkError> {
        let json = config_json(config)?;
        let component = &self.component;
        // Created once here to check the config and learn the layouts; every render creates
        // its own in a fresh instance.
        let layouts = off_thread(|| {
            let (mut store, bindings) = instantiate(component)?;
            let api = bindings.egress_plugin_layout_renderer().renderer();
            let renderer = timed(&mut store, |s| api.call_create(s, &json))?.map_err(from_wit)?;
            timed(&mut store, |s| api.call_layouts(s, renderer))
        })?;
        Ok(Box::new(WasmLayoutRenderer {
            component: self.component.clone(),
            config: json.into(),
            layouts,
        }))
    }
}

fn config_json(config: &Value) -> Result<String, SinkError> {
    serde_json::to_string(config)
        .map_err(|e| SinkError::config(format!("cannot encode config: {e}")))
}

/// A configured WASM renderer.
struct WasmLayoutRenderer {
    component: Arc<RendererComponent>,
    config: Arc<str>,
    layouts: Vec<String>,
}

#[async_trait]
impl LayoutRenderer for WasmLayoutRenderer {
    fn layouts(&self) -> Vec<String> {
        self.layouts.clone()
    }

    async fn render(
        &self,
        request: &RenderRequest,
        room: &RoomState,
    ) -> Result<Rendering, SinkError> {
        let (component, config) = (self.component.clone(), self.config.clone());
        let request = request_to_wit(request)?;
        let room = room_to_wit(room);
        // WASI's synchronous bindings must not run on an executor thread: a worker of its own.
        let worker = Worker::spawn("egress-wasm-render", ()).map_err(no_thread)?;
        worker
            .run(move |_| {
                let (mut store, bindings) = instantiate(&component)?;
                let api = bindings.egress_plugin_layout_renderer().renderer();
                let renderer =
                    timed(&mut store, |s| api.call_create(s, &config))?.map_err(from_wit)?;
                let out = timed(&mut store, |s| {
                    api.call_render(s, renderer, &request, &room)
                })?
                .map_err(from_wit)?;
                Ok(rendering_from_wit(out))
            })
            .await
            .map_err(gone)?
    }
}

fn request_to_wit(r: &RenderRequest) -> Result<wit::RenderRequest, SinkError> {
    Ok(wit::RenderRequest {
        layout: r.layout.clone(),
        width: r.width,
        height: r.height,
        audio_only: r.audio_only,
        video_only: r.video_only,
        custom_base_url: r.custom_base_url.clone(),
        template_base: r.template_base.clone(),
        options: serde_json::to_string(&r.options)
            .map_err(|e| SinkError::permanent(format!("cannot encode the options: {e}")))?,
    })
}

fn room_to_wit(room: &RoomState) -> wit::RoomState {
    let participant = |p: &Participant| wit::Participant {
        identity: p.identity.clone(),
        name: p.name.clone(),
        metadata: p.metadata.clone(),
        tracks: p
            .tracks
            .iter()
            .map(|t| wit::Track {
                id: t.id.clone(),
                kind: match t.kind {
                    TrackKind::Audio => wit::TrackKind::Audio,
                    TrackKind::Video => wit::TrackKind::Video,
                    TrackKind::ScreenShare => wit::TrackKind::ScreenShare,
                },
                muted: t.muted,
                width: t.width,
                height: t.height,
            })
            .collect(),
    };
    wit::RoomState {
        room_name: room.room_name.clone(),
        participants: room.participants.iter().map(participant).collect(),
        active_speaker: room.active_speaker.clone(),
    }
}

fn rendering_from_wit(r: wit::Rendering) -> Rendering {
    match r {
        wit::Rendering::PageUrl(url) => Rendering::PageUrl(url),
        wit::Rendering::Tiles(tiles) => Rendering::Tiles(
            tiles
                .into_iter()
                .map(|t| Tile {
                    x: t.x,
                    y: t.y,
                    w: t.w,
                    h: t.h,
                    z: t.z,
                    track_id: t.track_id,
                })
                .collect(),
        ),
    }
}
