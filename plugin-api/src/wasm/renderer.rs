//! The guest side of the `renderer-plugin` world: bindings and the adapters that
//! [`export_renderer!`](crate::export_renderer) plugs a [`RendererPlugin`] into.

use std::marker::PhantomData;

use crate::blocking::block_on;
use crate::renderer::{Participant, RenderRequest, Rendering, RoomState, Tile, Track, TrackKind};
use crate::renderer_plugin::RendererPlugin;

use super::{parse_json, to_wit_error};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "renderer-plugin",
        pub_export_macro: true,
        export_macro_name: "__wit_export_renderer_plugin",
        default_bindings_module: "egress_plugin_api::wasm::renderer::bindings",
        // The shared types are the sink world's, so that errors and descriptors convert with
        // the same code.
        with: {
            "egress:plugin/types@1.2.0": crate::wasm::bindings::egress::plugin::types,
            "egress:plugin/log@1.2.0": crate::wasm::bindings::egress::plugin::log,
        },
    });
}

use super::bindings::egress::plugin::types as wit;
use bindings::exports::egress::plugin::layout_renderer as exports;

#[doc(hidden)]
pub fn describe<R: RendererPlugin>() -> wit::Descriptor {
    super::descriptor_to_wit(R::describe())
}

#[doc(hidden)]
pub fn validate<R: RendererPlugin>(config: &str) -> Result<(), wit::SinkError> {
    parse_json(config)
        .and_then(|c| R::validate(&c))
        .map_err(to_wit_error)
}

/// The `renderer` resource, backed by an `R`.
#[doc(hidden)]
pub struct GuestRenderer<R: RendererPlugin> {
    renderer: R,
    _r: PhantomData<R>,
}

fn track_from_wit(t: exports::Track) -> Track {
    let mut track = Track::new(
        t.id,
        match t.kind {
            exports::TrackKind::Audio => TrackKind::Audio,
            exports::TrackKind::Video => TrackKind::Video,
            exports::TrackKind::ScreenShare => TrackKind::ScreenShare,
        },
    );
    track.muted = t.muted;
    track.width = t.width;
    track.height = t.height;
    track
}

fn room_from_wit(room: exports::RoomState) -> RoomState {
    let participants = room
        .participants
        .into_iter()
        .map(|p| {
            let mut participant = Participant::new(
                p.identity,
                p.tracks.into_iter().map(track_from_wit).collect(),
            );
            participant.name = p.name;
            participant.metadata = p.metadata;
            participant
        })
        .collect();
    let mut state = RoomState::new(room.room_name, participants);
    state.active_speaker = room.active_speaker;
    state
}

fn request_from_wit(r: exports::RenderRequest) -> Result<RenderRequest, wit::SinkError> {
    let mut request = RenderRequest::new(r.layout, r.width, r.height)
        .with_template_base(r.template_base)
        .with_media(r.audio_only, r.video_only);
    request.custom_base_url = r.custom_base_url;
    request.options = parse_json(&r.options).map_err(to_wit_error)?;
    Ok(request)
}

fn rendering_to_wit(r: Rendering) -> exports::Rendering {
    match r {
        Rendering::PageUrl(url) => exports::Rendering::PageUrl(url),
        Rendering::Tiles(tiles) => exports::Rendering::Tiles(
            tiles
                .into_iter()
                .map(|t: Tile| exports::Tile {
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

impl<R: RendererPlugin> exports::GuestRenderer for GuestRenderer<R> {
    fn create(config: String) -> Result<exports::Renderer, wit::SinkError> {
        let renderer = parse_json(&config)
            .and_then(|c| R::create(&c))
            .map_err(to_wit_error)?;
        Ok(exports::Renderer::new(GuestRenderer {
            renderer,
            _r: PhantomData,
        }))
    }

    fn layouts(&self) -> Vec<String> {
        self.renderer.layouts()
    }

    fn render(
        &self,
        request: exports::RenderRequest,
        room: exports::RoomState,
    ) -> Result<exports::Rendering, wit::SinkError> {
        let request = request_from_wit(request)?;
        let room = room_from_wit(room);
        block_on(self.renderer.render(&request, &room))
            .map(rendering_to_wit)
            .map_err(to_wit_error)
    }
}
