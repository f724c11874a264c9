//! Which keyframe a simulcast track's file starts on.
//!
//! livekit-server forwards a new subscriber whichever simulcast layer sends a keyframe first —
//! usually the lowest, whose keyframes are smallest — and moves it up to the top layer at that
//! layer's next keyframe, about a second later (measured with Chromium publishing 320x180,
//! 640x360 and 960x540: 21 frames of 320x180, one of 640x360, then 960x540). A WebM track
//! takes its size from its first keyframe and cannot change it in an append-only file, so a
//! file started on the first keyframe says 320x180 while nearly all its frames are larger.
//! The file therefore starts on a keyframe of the top layer the track announces
//! (`TrackInfo.layers`), waiting for it at most [`TOP_LAYER_WAIT`] after the first keyframe;
//! after that any keyframe starts it (a publisher that dropped its top layer for CPU or
//! bandwidth may never send it).

use std::time::Duration;

use tokio::time::Instant;

use egress_proto::livekit::{TrackInfo, VideoLayer};

use super::webm::WebmCodec;
use crate::webrtc::TrackCodec;

/// How long after the first keyframe a file waits for the top layer's.
pub const TOP_LAYER_WAIT: Duration = Duration::from_secs(3);

/// Decides whether a keyframe may start the file.
#[derive(Debug, Default)]
pub struct FirstKeyframe {
    /// The top layer's size, for a track with several layers.
    top: Option<(u32, u32)>,
    /// Set at the first keyframe seen.
    deadline: Option<Instant>,
}

impl FirstKeyframe {
    pub fn new(track: &TrackInfo) -> FirstKeyframe {
        let layers = layers(track);
        let top = (layers.len() > 1)
            .then(|| {
                layers
                    .iter()
                    .map(|l| (l.width, l.height))
                    .max_by_key(|&(w, h)| u64::from(w) * u64::from(h))
            })
            .flatten()
            .filter(|&(w, h)| w > 0 && h > 0);
        FirstKeyframe {
            top,
            deadline: None,
        }
    }

    /// Whether the keyframe `frame` of `codec` may start the file at `now`.
    pub fn accept(&mut self, codec: TrackCodec, frame: &[u8], now: Instant) -> bool {
        let Some((top_w, top_h)) = self.top else {
            return true;
        };
        let deadline = *self.deadline.get_or_insert(now + TOP_LAYER_WAIT);
        // Only the WebM codecs are checked: their keyframe headers give the size cheaply.
        let size = match codec {
            TrackCodec::Vp8 => WebmCodec::Vp8.keyframe_size(frame),
            TrackCodec::Vp9 => WebmCodec::Vp9.keyframe_size(frame),
            TrackCodec::Av1 => WebmCodec::Av1.keyframe_size(frame),
            TrackCodec::H264 | TrackCodec::H265 | TrackCodec::Opus => return true,
        };
        let Some((w, h)) = size else { return true };
        if w >= top_w && h >= top_h {
            return true;
        }
        if now >= deadline {
            tracing::info!(
                width = w,
                height = h,
                top_width = top_w,
                top_height = top_h,
                "no keyframe of the top simulcast layer in time; starting on a lower one"
            );
            return true;
        }
        tracing::debug!(
            width = w,
            height = h,
            top_width = top_w,
            top_height = top_h,
            "keyframe of a lower simulcast layer; waiting for the top layer's"
        );
        false
    }
}

/// The layers of the track's codec: `codecs[].layers` for the track's MIME type (the first
/// codec's otherwise), or the deprecated `layers` from a server that fills only those.
fn layers(track: &TrackInfo) -> &[VideoLayer] {
    let codec = track
        .codecs
        .iter()
        .find(|c| c.mime_type.eq_ignore_ascii_case(&track.mime_type))
        .or(track.codecs.first());
    match codec {
        Some(c) if !c.layers.is_empty() => &c.layers,
        #[allow(deprecated)]
        _ => &track.layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit::SimulcastCodecInfo;

    /// A VP8 keyframe header of `w`x`h` (RFC 6386 §9.1).
    fn vp8_keyframe(w: u16, h: u16) -> Vec<u8> {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&w.to_le_bytes());
        f.extend_from_slice(&h.to_le_bytes());
        f
    }

    fn track(layers: &[(u32, u32)]) -> TrackInfo {
        let layers = layers
            .iter()
            .map(|&(width, height)| VideoLayer {
                width,
                height,
                ..Default::default()
            })
            .collect();
        TrackInfo {
            mime_type: "video/VP8".into(),
            codecs: vec![SimulcastCodecInfo {
                mime_type: "video/VP8".into(),
                layers,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_simulcast_file_waits_for_the_top_layer() {
        let mut gate = FirstKeyframe::new(&track(&[(320, 180), (640, 360), (960, 540)]));
        let t0 = Instant::now();
        assert!(!gate.accept(TrackCodec::Vp8, &vp8_keyframe(320, 180), t0));
        assert!(!gate.accept(
            TrackCodec::Vp8,
            &vp8_keyframe(640, 360),
            t0 + Duration::from_millis(800)
        ));
        assert!(gate.accept(
            TrackCodec::Vp8,
            &vp8_keyframe(960, 540),
            t0 + Duration::from_millis(850)
        ));
    }

    #[tokio::test]
    async fn a_lower_layer_starts_the_file_after_the_wait() {
        let mut gate = FirstKeyframe::new(&track(&[(320, 180), (960, 540)]));
        let t0 = Instant::now();
        assert!(!gate.accept(TrackCodec::Vp8, &vp8_keyframe(320, 180), t0));
        assert!(gate.accept(
            TrackCodec::Vp8,
            &vp8_keyframe(320, 180),
            t0 + TOP_LAYER_WAIT
        ));
    }

    #[tokio::test]
    async fn a_single_layer_track_starts_at_once() {
        let mut gate = FirstKeyframe::new(&track(&[(960, 540)]));
        assert!(gate.accept(TrackCodec::Vp8, &vp8_keyframe(320, 180), Instant::now()));
        let mut gate = FirstKeyframe::new(&track(&[]));
        assert!(gate.accept(TrackCodec::Vp8, &vp8_keyframe(320, 180), Instant::now()));
    }
}
