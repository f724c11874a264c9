//! [`LayoutRenderer`]: the second extension point. Given a request and the room's current
//! participants and tracks, say what the recording should look like.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SinkError;

/// Turns a room's state into something a compositor can draw.
///
/// Two answers are possible: a page URL that the headless browser loads (the LiveKit template
/// model), or a tile layout for a native compositor (no browser). The host calls
/// [`render`](Self::render) at StartEgress (to refuse what it cannot record) and again when the
/// recording starts, with the room as known then (for a page, empty: the page follows the room
/// itself). A native compositor would call it again whenever the room changes; room composite
/// records pages only, and refuses tiles, for now. A renderer must be cheap and must not keep
/// state between calls beyond its config (the WASM loader gives each call a fresh instance).
///
/// Errors use [`SinkError`]'s classification: *config* for an unknown layout, *retryable* when
/// a template service is briefly unavailable, *permanent* otherwise.
#[async_trait]
pub trait LayoutRenderer: Send + Sync + 'static {
    /// Layout names this renderer handles (`grid`, `speaker`, …).
    fn layouts(&self) -> Vec<String>;

    async fn render(
        &self,
        request: &RenderRequest,
        room: &RoomState,
    ) -> Result<Rendering, SinkError>;
}

/// What the egress request asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RenderRequest {
    /// Layout name from the request (`grid`, `speaker`, `single-speaker`, or a custom one).
    pub layout: String,
    /// Output canvas in pixels.
    pub width: u32,
    pub height: u32,
    pub audio_only: bool,
    pub video_only: bool,
    /// The request's custom template URL, if any. The host does not consult renderers for
    /// requests that set one (Go's precedence: that page is loaded whatever the layout), so
    /// renderers see `None` today; the field exists for renderers of later minors.
    pub custom_base_url: Option<String>,
    /// The service's template base URL (`template_base`), where the bundled layouts are
    /// served. Since API 1.1. A renderer with pages of its own ignores it.
    #[serde(default)]
    pub template_base: String,
    /// Anything else the request carried that the renderer may understand.
    pub options: Value,
}

impl RenderRequest {
    pub fn new(layout: impl Into<String>, width: u32, height: u32) -> Self {
        RenderRequest {
            layout: layout.into(),
            width,
            height,
            ..RenderRequest::default()
        }
    }

    pub fn with_template_base(mut self, base: impl Into<String>) -> Self {
        self.template_base = base.into();
        self
    }

    pub fn with_media(mut self, audio_only: bool, video_only: bool) -> Self {
        self.audio_only = audio_only;
        self.video_only = video_only;
        self
    }
}

/// The room as the recorder sees it now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RoomState {
    pub room_name: String,
    pub participants: Vec<Participant>,
    /// Identity of the current active speaker.
    pub active_speaker: Option<String>,
}

impl RoomState {
    pub fn new(room_name: impl Into<String>, participants: Vec<Participant>) -> Self {
        RoomState {
            room_name: room_name.into(),
            participants,
            active_speaker: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Participant {
    pub identity: String,
    pub name: String,
    pub metadata: String,
    pub tracks: Vec<Track>,
}

impl Participant {
    pub fn new(identity: impl Into<String>, tracks: Vec<Track>) -> Self {
        Participant {
            identity: identity.into(),
            tracks,
            ..Participant::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    #[default]
    Audio,
    Video,
    ScreenShare,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Track {
    /// The track SID.
    pub id: String,
    pub kind: TrackKind,
    pub muted: bool,
    /// Source dimensions for video (0 when unknown or audio).
    pub width: u32,
    pub height: u32,
}

impl Track {
    pub fn new(id: impl Into<String>, kind: TrackKind) -> Self {
        Track {
            id: id.into(),
            kind,
            ..Track::default()
        }
    }
}

/// A renderer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rendering {
    /// Load this page in the headless browser and record what it shows.
    PageUrl(String),
    /// Composite these tracks natively; tiles are drawn in increasing `z`.
    Tiles(Vec<Tile>),
}

/// One rectangle of the canvas showing one track. Coordinates are pixels from the top left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
    pub z: i32,
    pub track_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-column grid: the shape of a native renderer, and proof the trait is usable.
    struct Grid;

    #[async_trait]
    impl LayoutRenderer for Grid {
        fn layouts(&self) -> Vec<String> {
            vec!["grid".into()]
        }

        async fn render(
            &self,
            request: &RenderRequest,
            room: &RoomState,
        ) -> Result<Rendering, SinkError> {
            if request.layout != "grid" {
                return Err(SinkError::config_field("layout", "only grid is supported"));
            }
            let videos: Vec<&Track> = room
                .participants
                .iter()
                .flat_map(|p| &p.tracks)
                .filter(|t| t.kind != TrackKind::Audio)
                .collect();
            let w = request.width / 2;
            let rows = videos.len().div_ceil(2).max(1) as u32;
            let h = request.height / rows;
            Ok(Rendering::Tiles(
                videos
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Tile {
                        x: ((i as u32 % 2) * w) as i32,
                        y: ((i as u32 / 2) * h) as i32,
                        w,
                        h,
                        z: 0,
                        track_id: t.id.clone(),
                    })
                    .collect(),
            ))
        }
    }

    #[test]
    fn grid_renderer_tiles_video_tracks() {
        let room = RoomState::new(
            "r",
            vec![
                Participant::new(
                    "a",
                    vec![
                        Track::new("TR_a", TrackKind::Video),
                        Track::new("TR_a_mic", TrackKind::Audio),
                    ],
                ),
                Participant::new("b", vec![Track::new("TR_b", TrackKind::ScreenShare)]),
            ],
        );
        let out =
            crate::blocking::block_on(Grid.render(&RenderRequest::new("grid", 1280, 720), &room));
        let Ok(Rendering::Tiles(tiles)) = out else {
            panic!("expected tiles, got {out:?}");
        };
        assert_eq!(tiles.len(), 2);
        assert_eq!((tiles[1].x, tiles[1].w, tiles[1].h), (640, 640, 720));
        let bad = crate::blocking::block_on(Grid.render(&RenderRequest::new("pip", 1, 1), &room));
        assert!(bad.is_err_and(|e| e.is_config() && e.field() == Some("layout")));
    }
}
