//! The egress manifest (reference §2.8): a JSON summary written as `<egress_id>.json` beside
//! each output (the file, the playlist, each image directory) unless the output sets
//! `disable_manifest` (it is written anyway when the backup storage was used), as Go writes it.
//! Empty fields are left out, as Go's `omitempty` does. It lists the files, the playlists with
//! every stored segment, and every stored image, as Go's does; beyond Go's fields it lists the
//! egress's streams (`streams`, redacted as `StreamInfo.url`), so a recording's manifest says
//! where it was also published and how that went.

use egress_proto::livekit::{StreamInfo, stream_info};
use serde::Serialize;

use super::OutputSet;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub egress_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub started_at: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub ended_at: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ManifestFile>,
    /// Go's `playlists`: each segments output's playlist and the segments stored for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub playlists: Vec<ManifestPlaylist>,
    /// Go's `images`: every stored image of every image output, in the order they were taken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ManifestImage>,
    /// Every stream URL the egress published to, as its `StreamInfo` ended (beyond Go, whose
    /// manifest has no streams). URLs are redacted as in `StreamInfo.url`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<ManifestStream>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
}

/// One stream URL (RTMP, SRT or websocket) and how it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ManifestStream {
    /// Redacted (`rtmp://host/app/{abc...xyz}`), as `StreamInfo.url`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `ACTIVE`, `FINISHED` or `FAILED`, as the `StreamInfo.Status` enum names it.
    pub status: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub started_at: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub ended_at: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub duration: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub last_retry_at: i64,
}

impl From<&StreamInfo> for ManifestStream {
    fn from(s: &StreamInfo) -> Self {
        ManifestStream {
            url: s.url.clone(),
            status: stream_info::Status::try_from(s.status)
                .map(|st| st.as_str_name().to_owned())
                .unwrap_or_else(|_| s.status.to_string()),
            started_at: s.started_at,
            ended_at: s.ended_at,
            duration: s.duration,
            error: s.error.clone(),
            retries: s.retries,
            last_retry_at: s.last_retry_at,
        }
    }
}

/// The streams of `outputs` for the manifest: the websocket's entry, then every live URL, in
/// the order `stream_results` lists them.
pub fn streams(outputs: &OutputSet) -> Vec<ManifestStream> {
    let live = outputs.live.as_ref().map(|l| l.infos()).unwrap_or_default();
    outputs
        .streams
        .iter()
        .chain(live.iter())
        .map(ManifestStream::from)
        .collect()
}

/// A segments output: its playlist and every stored segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ManifestPlaylist {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<ManifestSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestSegment {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
}

/// One stored image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestImage {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    /// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
    pub timestamp: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

impl Manifest {
    /// The manifest's storage path: `<dir of the output>/<egress_id>.json`.
    pub fn storage_path(output_storage_path: &str, egress_id: &str) -> String {
        match output_storage_path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{egress_id}.json"),
            None => format!("{egress_id}.json"),
        }
    }

    /// The JSON text, newline-terminated like Go's `json.Encoder` (which also leaves `<>&`
    /// unescaped here, as serde_json does).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_omits_empty_fields_and_sits_beside_the_file() {
        let m = Manifest {
            egress_id: "EG_1".into(),
            room_name: "r".into(),
            started_at: 5,
            files: vec![ManifestFile {
                filename: "a/b.mp4".into(),
                location: "/x/a/b.mp4".into(),
            }],
            ..Default::default()
        };
        let text = String::from_utf8(m.to_json()).unwrap();
        assert_eq!(
            text,
            "{\"egress_id\":\"EG_1\",\"room_name\":\"r\",\"started_at\":5,\"files\":[{\"filename\":\"a/b.mp4\",\"location\":\"/x/a/b.mp4\"}]}\n"
        );
        assert_eq!(Manifest::storage_path("a/b.mp4", "EG_1"), "a/EG_1.json");
        assert_eq!(Manifest::storage_path("b.mp4", "EG_1"), "EG_1.json");
    }

    #[test]
    fn the_manifest_lists_the_streams_as_their_status_ended() {
        let mut outputs = OutputSet::default();
        outputs.streams.push(StreamInfo {
            url: "wss://h/audio?token={abc...xyz}".into(),
            status: stream_info::Status::Finished as i32,
            started_at: 10,
            ended_at: 30,
            duration: 20,
            ..Default::default()
        });
        outputs.streams.push(StreamInfo {
            url: "rtmp://h/live/{s3c...one}".into(),
            status: stream_info::Status::Failed as i32,
            started_at: 10,
            ended_at: 25,
            duration: 15,
            error: "no answer within 5s".into(),
            retries: 3,
            last_retry_at: 24,
        });
        let m = Manifest {
            egress_id: "EG_1".into(),
            streams: streams(&outputs),
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(
            json["streams"],
            serde_json::json!([
                { "url": "wss://h/audio?token={abc...xyz}", "status": "FINISHED", "started_at": 10, "ended_at": 30, "duration": 20 },
                { "url": "rtmp://h/live/{s3c...one}", "status": "FAILED", "started_at": 10, "ended_at": 25, "duration": 15,
                  "error": "no answer within 5s", "retries": 3, "last_retry_at": 24 },
            ])
        );
        // Without streams there is no key, as Go's manifest has none.
        let text = String::from_utf8(Manifest::default().to_json()).unwrap();
        assert!(!text.contains("streams"), "{text}");
    }

    #[test]
    fn the_manifest_lists_playlists_with_their_segments_and_images_as_gos() {
        let m = Manifest {
            egress_id: "EG_1".into(),
            playlists: vec![ManifestPlaylist {
                location: "s3://b/hls/main.m3u8".into(),
                segments: vec![
                    ManifestSegment {
                        filename: "hls/seg_00000.ts".into(),
                        location: "s3://b/hls/seg_00000.ts".into(),
                    },
                    ManifestSegment {
                        filename: "hls/seg_00001.ts".into(),
                        location: "s3://b/hls/seg_00001.ts".into(),
                    },
                ],
            }],
            images: vec![ManifestImage {
                filename: "img/shot_00000.jpeg".into(),
                timestamp: "2026-01-02T03:04:05.123456789Z".into(),
                location: "s3://b/img/shot_00000.jpeg".into(),
            }],
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "egress_id": "EG_1",
                "playlists": [{ "location": "s3://b/hls/main.m3u8", "segments": [
                    { "filename": "hls/seg_00000.ts", "location": "s3://b/hls/seg_00000.ts" },
                    { "filename": "hls/seg_00001.ts", "location": "s3://b/hls/seg_00001.ts" },
                ] }],
                "images": [{ "filename": "img/shot_00000.jpeg",
                    "timestamp": "2026-01-02T03:04:05.123456789Z",
                    "location": "s3://b/img/shot_00000.jpeg" }],
            })
        );
        // Without them there are no keys (Go's omitempty).
        let text = String::from_utf8(Manifest::default().to_json()).unwrap();
        assert_eq!(text, "{}\n");
    }
}
